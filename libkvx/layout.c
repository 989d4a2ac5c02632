/* placeholder: being written */
#include <kvx/kvx.h>
