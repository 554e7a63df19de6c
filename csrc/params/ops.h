/* Parameter structs of csrc/ops.cu (see zo_params.h). */
#pragma once

#include <stdint.h>
