#include "parallel/rendezvous_store.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"

namespace tessera::parallel {

std::string FileRendezvousStore::PathOf(const std::string& key) const {
  std::string name;
  for (char c : key) name.push_back(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ? c : '.');
  return dir_ + "/" + name;
}

absl::Status FileRendezvousStore::Set(const std::string& key, const std::vector<char>& value) {
  const std::string path = PathOf(key), tmp = absl::StrCat(path, ".tmp", getpid());
  {
    std::ofstream out(tmp, std::ios::binary);
    out.write(value.data(), static_cast<std::streamsize>(value.size()));
    if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", tmp));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot publish ", path, ": ", ec.message()));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<char>> FileRendezvousStore::Get(const std::string& key, std::chrono::milliseconds timeout) {
  const std::string path = PathOf(key);
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (true) {
    std::ifstream in(path, std::ios::binary);
    if (in) return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (std::chrono::steady_clock::now() >= until) {
      return absl::DeadlineExceededError(absl::StrCat("rendezvous key '", key, "' was never set"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace tessera::parallel
