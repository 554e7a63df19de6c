/* Parameter structs of csrc/update.cu (see zo_params.h). */
#pragma once

#include <stdint.h>
