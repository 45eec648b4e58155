// The benchmark and simulator code names core/random.h's generator in its own namespace.
#pragma once

#include "core/random.h"

namespace tandem::bench {

using ::tandem::Random;

}  // namespace tandem::bench
