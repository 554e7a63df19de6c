/* Parameter structs of csrc/attention.cu (see zo_params.h). */
#pragma once

#include <stdint.h>
