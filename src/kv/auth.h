// Peer authentication and identity for the KV transfer path.
//
// Every peer proves it knows the cluster token without sending it: the receiver sends a random
// nonce, the sender answers HMAC-SHA256(token, nonce || sender_epoch), compared in constant time.
//
// Thread-safety: stateless functions; RandomU64/RandomNonce use OpenSSL's thread-safe RNG.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "kv/wire.h"

namespace tandem::kv {

std::array<uint8_t, kMacBytes> ComputeMac(std::string_view token,
                                          const std::array<uint8_t, kNonceBytes>& nonce,
                                          uint64_t sender_epoch);
bool MacEquals(const std::array<uint8_t, kMacBytes>& a, const std::array<uint8_t, kMacBytes>& b);

std::array<uint8_t, kNonceBytes> RandomNonce();
// A random non-zero 64-bit value (epochs, reservation ids, cookies).
uint64_t RandomU64();

// Identifies this machine boot: equal on two processes of one host, different across hosts.
uint64_t HostId();

}  // namespace tandem::kv
