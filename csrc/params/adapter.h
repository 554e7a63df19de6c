/* Parameter structs of csrc/adapter.cu (see zo_params.h). */
#pragma once

#include <stdint.h>
