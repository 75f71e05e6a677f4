// Must compile: the control case, so the check above cannot pass by a
// broken command line.
#include "kmsfleet/core/reasons.h"
