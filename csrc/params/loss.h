/* Parameter structs of csrc/loss.cu (see zo_params.h). */
#pragma once

#include <stdint.h>
