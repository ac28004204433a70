// RendezvousStore: the key-value place where the ranks of a group find each other
// before their first collective (addresses, and later the NCCL unique id).
//
// Workers use a store served by the coordinator; local tools and tests may use
// FileRendezvousStore (a directory every rank can read).
//
// Thread-safety: implementations must allow concurrent calls.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tessera::parallel {

class RendezvousStore {
 public:
  virtual ~RendezvousStore() = default;
  virtual absl::Status Set(const std::string& key, const std::vector<char>& value) = 0;
  // Waits until `key` is set (DEADLINE_EXCEEDED after `timeout`) and returns its value.
  virtual absl::StatusOr<std::vector<char>> Get(const std::string& key, std::chrono::milliseconds timeout) = 0;
};

// One file per key in `dir` (written to a temporary name, then renamed, so readers
// never see a partial value).
class FileRendezvousStore : public RendezvousStore {
 public:
  explicit FileRendezvousStore(std::string dir) : dir_(std::move(dir)) {}
  absl::Status Set(const std::string& key, const std::vector<char>& value) override;
  absl::StatusOr<std::vector<char>> Get(const std::string& key, std::chrono::milliseconds timeout) override;

 private:
  std::string PathOf(const std::string& key) const;
  std::string dir_;
};

}  // namespace tessera::parallel
