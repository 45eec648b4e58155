#include "kv/auth.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include "xxhash.h"

namespace tandem::kv {

std::array<uint8_t, kMacBytes> ComputeMac(std::string_view token,
                                          const std::array<uint8_t, kNonceBytes>& nonce,
                                          uint64_t sender_epoch) {
  uint8_t message[kNonceBytes + 8];
  std::copy(nonce.begin(), nonce.end(), message);
  for (int i = 0; i < 8; ++i) message[kNonceBytes + i] = (sender_epoch >> (8 * i)) & 0xff;
  std::array<uint8_t, kMacBytes> mac{};
  unsigned int length = 0;
  if (HMAC(EVP_sha256(), token.data(), static_cast<int>(token.size()), message, sizeof(message),
           mac.data(), &length) == nullptr ||
      length != kMacBytes) {
    std::fprintf(stderr, "kv: HMAC-SHA256 failed\n");
    std::abort();
  }
  return mac;
}

bool MacEquals(const std::array<uint8_t, kMacBytes>& a, const std::array<uint8_t, kMacBytes>& b) {
  return CRYPTO_memcmp(a.data(), b.data(), kMacBytes) == 0;
}

std::array<uint8_t, kNonceBytes> RandomNonce() {
  std::array<uint8_t, kNonceBytes> nonce{};
  if (RAND_bytes(nonce.data(), nonce.size()) != 1) {
    std::fprintf(stderr, "kv: no randomness available\n");
    std::abort();
  }
  return nonce;
}

uint64_t RandomU64() {
  uint64_t value = 0;
  while (value == 0) {
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&value), sizeof(value)) != 1) {
      std::fprintf(stderr, "kv: no randomness available\n");
      std::abort();
    }
  }
  return value;
}

uint64_t HostId() {
  static const uint64_t id = [] {
    std::string identity;
    std::ifstream boot("/proc/sys/kernel/random/boot_id");
    std::getline(boot, identity);
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    identity += host;
    return XXH3_64bits(identity.data(), identity.size());
  }();
  return id;
}

}  // namespace tandem::kv
