#include "zq_internal.h"
