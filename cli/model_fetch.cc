#include "cli/model_fetch.h"

#include <curl/curl.h>
#include <fnmatch.h>
#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "common/progress.h"
#include "nlohmann/json.hpp"

namespace tessera::cli {
namespace {

namespace fs = std::filesystem;

// A streaming hash of a file's content: SHA-256, or git's blob SHA-1 (the hash of
// "blob SIZE\0" and the content), which the Hub reports for files not in LFS.
class ContentHash {
 public:
  explicit ContentHash(const ExpectedFile& file) : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) {
    const bool sha256 = file.digest == ExpectedFile::Digest::kSha256;
    EVP_DigestInit_ex(ctx_.get(), sha256 ? EVP_sha256() : EVP_sha1(), nullptr);
    if (!sha256) {
      const std::string header = absl::StrCat("blob ", file.size);
      Update(header.c_str(), header.size() + 1);  // with its NUL
    }
  }
  void Update(const void* data, size_t n) { EVP_DigestUpdate(ctx_.get(), data, n); }
  std::string Hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_.get(), digest, &n);
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string hex;
    for (unsigned int i = 0; i < n; ++i) hex += {kDigits[digest[i] >> 4], kDigits[digest[i] & 15]};
    return hex;
  }

 private:
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx_;
};

bool IsHex(const std::string& s, size_t length) {
  return s.size() == length && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// A relative path that stays inside the destination.
bool IsSafeRelativePath(const std::string& path) {
  if (path.empty() || path[0] == '/' || path.find('\\') != std::string::npos) return false;
  for (const absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return true;
}

// A relative path as a URL's path: each segment percent-encoded ("a b/c" -> "a%20b/c").
std::string UrlPath(const std::string& path) {
  std::string url;
  for (const absl::string_view part : absl::StrSplit(path, '/')) {
    char* escaped = curl_easy_escape(nullptr, part.data(), static_cast<int>(part.size()));
    absl::StrAppend(&url, url.empty() ? "" : "/", escaped);
    curl_free(escaped);
  }
  return url;
}

// Where the files are, and how to reach them.
struct Remote {
  std::string base_url;   // ends with '/'; a file's URL is base_url + its path
  std::string aws_sigv4;  // libcurl's CURLOPT_AWS_SIGV4 provider string, for S3
  std::vector<std::string> headers;
};

class Fetcher {
 public:
  Fetcher(const FetchOptions& options, Remote remote) : options_(options), remote_(std::move(remote)) {}

  // A small text (a manifest, an API answer) into memory.
  absl::StatusOr<std::string> Text(const std::string& url) {
    std::string text;
    RETURN_IF_ERROR(WithRetries(url, [&](CURL* curl) {
      text.clear();
      curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &AppendToString);
      curl_easy_setopt(curl, CURLOPT_WRITEDATA, &text);
      return Perform(curl, url);
    }));
    return text;
  }

  // `file` into `dest`, checked before it is renamed into place.
  absl::Status File(const ExpectedFile& file, const fs::path& dest) {
    const std::string url = remote_.base_url + UrlPath(file.path);
    // Unique per process: pods sharing a PVC all run as PID 1 of their own namespace.
    const fs::path partial = dest.string() + absl::StrCat(".partial.", std::random_device()());
    ByteProgress progress(absl::StrCat("fetching ", file.path),
                          options_.quiet ? ByteProgress::Style::kQuiet : ByteProgress::Style::kAuto);
    std::string hex;
    const absl::Status fetched = WithRetries(url, [&](CURL* curl) {
      FileSink sink{std::fopen(partial.c_str(), "wb"), ContentHash(file), &progress, file.size};
      if (sink.out == nullptr) return absl::PermissionDeniedError(absl::StrCat("cannot write ", partial.string()));
      curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &WriteToFile);
      curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
      curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
      curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, &ShowProgress);
      curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &sink);
      absl::Status status = Perform(curl, url);
      if (std::fclose(sink.out) != 0 && status.ok()) status = absl::DataLossError("write failed (disk full?)");
      hex = sink.hash.Hex();
      return status;
    });
    progress.Finish();
    std::error_code ec;
    if (!fetched.ok()) {
      fs::remove(partial, ec);
      return fetched;
    }
    if (hex != file.hex) {
      fs::remove(partial, ec);
      return absl::DataLossError(
          absl::StrCat(file.path, ": checksum mismatch (expected ", file.hex, ", got ", hex, "); not kept"));
    }
    fs::rename(partial, dest, ec);  // atomic: other pods fetching the same file see it whole or not at all
    if (ec) return absl::InternalError(absl::StrCat("cannot rename into ", dest.string(), ": ", ec.message()));
    return absl::OkStatus();
  }

 private:
  struct FileSink {
    FILE* out;
    ContentHash hash;
    ByteProgress* progress;
    int64_t size;
  };

  static size_t AppendToString(char* data, size_t size, size_t n, void* text) {
    static_cast<std::string*>(text)->append(data, size * n);
    return size * n;
  }
  static size_t WriteToFile(char* data, size_t size, size_t n, void* user) {
    auto* sink = static_cast<FileSink*>(user);
    sink->hash.Update(data, size * n);
    return std::fwrite(data, 1, size * n, sink->out);
  }
  static int ShowProgress(void* user, curl_off_t total, curl_off_t done, curl_off_t, curl_off_t) {
    auto* sink = static_cast<FileSink*>(user);
    if (done < total || total == 0) sink->progress->Update(done, total > 0 ? total : sink->size);
    return 0;
  }

  absl::Status Perform(CURL* curl, const std::string& url) {
    char error[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);  // the Hub redirects LFS files to its CDN
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https,file");
    curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);  // a stalled transfer fails after a minute
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "tessera-fetch-model");
    if (!options_.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, options_.ca_file.c_str());
    curl_slist* headers = nullptr;
    for (const std::string& h : remote_.headers) headers = curl_slist_append(headers, h.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    std::string credentials;
    if (!remote_.aws_sigv4.empty()) {
      credentials = absl::StrCat(std::getenv("AWS_ACCESS_KEY_ID"), ":", std::getenv("AWS_SECRET_ACCESS_KEY"));
      curl_easy_setopt(curl, CURLOPT_AWS_SIGV4, remote_.aws_sigv4.c_str());
      curl_easy_setopt(curl, CURLOPT_USERPWD, credentials.c_str());
    }
    const CURLcode code = curl_easy_perform(curl);
    curl_slist_free_all(headers);
    long http_status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http_status);
    if (code == CURLE_OK && http_status < 400) return absl::OkStatus();
    const std::string what = code == CURLE_OK ? absl::StrCat("HTTP ", http_status)
                                              : absl::StrCat(curl_easy_strerror(code), *error ? ": " : "", error);
    // 5xx, 429 and broken connections may pass; other answers (a certificate that is
    // not trusted, a 404) will not change.
    const bool transient = http_status >= 500 || http_status == 429 || code == CURLE_COULDNT_CONNECT ||
                           code == CURLE_COULDNT_RESOLVE_HOST || code == CURLE_OPERATION_TIMEDOUT ||
                           code == CURLE_RECV_ERROR || code == CURLE_SEND_ERROR || code == CURLE_PARTIAL_FILE ||
                           code == CURLE_GOT_NOTHING || code == CURLE_HTTP2 || code == CURLE_HTTP2_STREAM;
    const std::string message = absl::StrCat(url, ": ", what);
    if (http_status == 401 || http_status == 403) return absl::PermissionDeniedError(message);
    if (http_status == 404 || code == CURLE_FILE_COULDNT_READ_FILE) return absl::NotFoundError(message);
    return transient ? absl::UnavailableError(message) : absl::FailedPreconditionError(message);
  }

  template <typename Attempt>
  absl::Status WithRetries(const std::string& url, Attempt attempt) {
    absl::Status status;
    for (int i = 0; i <= options_.retries; ++i) {
      if (i > 0) {
        log::Warning() << status.message() << "; retrying";
        std::this_thread::sleep_for(std::chrono::seconds(1 << (i - 1)));
      }
      std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
      status = attempt(curl.get());
      if (status.ok() || !absl::IsUnavailable(status)) return status;
    }
    return status;
  }

  const FetchOptions& options_;
  Remote remote_;
};

// Hashes a file already in the destination (a restarted initContainer's earlier work).
bool AlreadyThere(const ExpectedFile& file, const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  if (file.size >= 0 && static_cast<int64_t>(fs::file_size(path, ec)) != file.size) return false;
  ContentHash hash(file);
  std::ifstream in(path, std::ios::binary);
  std::vector<char> buffer(1 << 20);
  while (in.read(buffer.data(), buffer.size()) || in.gcount() > 0) hash.Update(buffer.data(), in.gcount());
  return hash.Hex() == file.hex;
}

// The remote of a manifest-listed source, or an error for a malformed one.
absl::StatusOr<Remote> ManifestRemote(const FetchOptions& options) {
  const std::string& s = options.source;
  auto folder = [](std::string url) { return absl::EndsWith(url, "/") ? url : url + "/"; };
  if (absl::StartsWith(s, "http://") || absl::StartsWith(s, "https://") || absl::StartsWith(s, "file://")) {
    return Remote{folder(s), "", {}};
  }
  if (absl::StartsWith(s, "s3://")) {
    if (options.s3_endpoint.empty()) {
      return absl::InvalidArgumentError("s3:// sources need --s3-endpoint (e.g. https://s3.us-east-1.amazonaws.com)");
    }
    Remote remote{folder(absl::StrCat(folder(options.s3_endpoint), s.substr(5))), "", {}};  // path-style
    if (std::getenv("AWS_ACCESS_KEY_ID") != nullptr) {
      if (std::getenv("AWS_SECRET_ACCESS_KEY") == nullptr) {
        return absl::InvalidArgumentError("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
      }
      remote.aws_sigv4 = absl::StrCat("aws:amz:", options.s3_region, ":s3");
      if (const char* token = std::getenv("AWS_SESSION_TOKEN")) remote.headers.push_back(absl::StrCat("x-amz-security-token: ", token));
    }
    return remote;
  }
  if (absl::StartsWith(s, "/")) return Remote{folder(absl::StrCat("file://", s)), "", {}};
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown source '", s, "': hf://ORG/NAME[@REV], https://HOST/PATH/, s3://BUCKET/PREFIX or an absolute DIR"));
}

}  // namespace

absl::StatusOr<std::vector<ExpectedFile>> ParseSha256Sums(const std::string& text) {
  std::vector<ExpectedFile> files;
  std::istringstream lines(text);
  std::string line;
  for (int number = 1; std::getline(lines, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    // "HEX  PATH" (text mode) or "HEX *PATH" (binary mode).
    ExpectedFile file;
    file.hex = absl::AsciiStrToLower(line.substr(0, 64));
    const bool separated = line.size() > 66 && line[64] == ' ' && (line[65] == ' ' || line[65] == '*');
    if (!IsHex(file.hex, 64) || !separated) {
      return absl::InvalidArgumentError(absl::StrCat("SHA256SUMS line ", number, ": not 'SHA256  PATH'"));
    }
    file.path = line.substr(66);
    if (absl::StartsWith(file.path, "./")) file.path = file.path.substr(2);
    if (!IsSafeRelativePath(file.path)) {
      return absl::InvalidArgumentError(
          absl::StrCat("SHA256SUMS line ", number, ": path '", file.path, "' leaves the destination"));
    }
    files.push_back(std::move(file));
  }
  if (files.empty()) return absl::InvalidArgumentError("SHA256SUMS lists no files");
  return files;
}

absl::StatusOr<std::vector<ExpectedFile>> ParseHubFiles(const std::string& json,
                                                        const std::vector<std::string>& include) {
  const nlohmann::json info = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!info.is_object() || !info.contains("siblings") || !info["siblings"].is_array()) {
    return absl::InvalidArgumentError("the Hub's answer has no file list (siblings)");
  }
  // Fields of the wrong type read as absent (a mirror's answer is not trusted).
  auto text = [](const nlohmann::json& o, const char* key) {
    return o.contains(key) && o[key].is_string() ? o[key].get<std::string>() : std::string();
  };
  auto size = [](const nlohmann::json& o) {
    return o.contains("size") && o["size"].is_number_integer() ? o["size"].get<int64_t>() : int64_t{-1};
  };
  std::vector<ExpectedFile> files;
  for (const nlohmann::json& sibling : info["siblings"]) {
    if (!sibling.is_object()) return absl::InvalidArgumentError("the Hub's file list holds a non-object");
    ExpectedFile file;
    file.path = text(sibling, "rfilename");
    bool wanted = false;
    for (const std::string& pattern : include) wanted |= fnmatch(pattern.c_str(), file.path.c_str(), 0) == 0;
    if (!wanted) continue;
    if (!IsSafeRelativePath(file.path)) {
      return absl::InvalidArgumentError(absl::StrCat("the Hub lists '", file.path, "', which leaves the destination"));
    }
    if (sibling.contains("lfs") && sibling["lfs"].is_object()) {
      file.hex = text(sibling["lfs"], "sha256");
      file.size = size(sibling["lfs"]);
    } else {
      file.digest = ExpectedFile::Digest::kGitBlobSha1;
      file.hex = text(sibling, "blobId");
      file.size = size(sibling);
    }
    const bool sha256 = file.digest == ExpectedFile::Digest::kSha256;
    if (!IsHex(file.hex, sha256 ? 64 : 40) || (!sha256 && file.size < 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("the Hub gives no checksum for '", file.path, "' (was the list asked with blobs=true?)"));
    }
    files.push_back(std::move(file));
  }
  if (files.empty()) return absl::NotFoundError("no file of the repository matches --include");
  return files;
}

absl::Status FetchModel(const FetchOptions& options) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  std::vector<ExpectedFile> files;
  std::unique_ptr<Fetcher> fetcher;
  if (absl::StartsWith(options.source, "hf://")) {
    std::string repo = options.source.substr(5), revision = "main";
    if (const size_t at = repo.find('@'); at != std::string::npos) {
      revision = repo.substr(at + 1);
      repo = repo.substr(0, at);
    }
    if (std::count(repo.begin(), repo.end(), '/') != 1 || !IsSafeRelativePath(repo) || revision.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("'", options.source, "' is not hf://ORG/NAME[@REVISION]"));
    }
    const std::string endpoint =
        absl::EndsWith(options.hf_endpoint, "/") ? options.hf_endpoint : options.hf_endpoint + "/";
    Remote api{endpoint, "", {}};
    if (const char* token = std::getenv("HF_TOKEN")) api.headers.push_back(absl::StrCat("Authorization: Bearer ", token));
    Fetcher hub(options, api);
    ASSIGN_OR_RETURN(const std::string answer,
                     hub.Text(absl::StrCat(endpoint, "api/models/", repo, "/revision/", revision, "?blobs=true")));
    ASSIGN_OR_RETURN(files, ParseHubFiles(answer, options.include));
    // Every file from the commit the revision named when listed, even if it moves on.
    const nlohmann::json sha = nlohmann::json::parse(answer)["sha"];
    const std::string commit = sha.is_string() && IsHex(sha.get<std::string>(), 40) ? sha.get<std::string>() : revision;
    log::Info() << "fetch-model: " << repo << " at " << commit << ", " << files.size() << " files";
    api.base_url = absl::StrCat(endpoint, repo, "/resolve/", commit, "/");
    fetcher = std::make_unique<Fetcher>(options, api);
  } else {
    ASSIGN_OR_RETURN(Remote remote, ManifestRemote(options));
    fetcher = std::make_unique<Fetcher>(options, remote);
    ASSIGN_OR_RETURN(const std::string manifest, fetcher->Text(remote.base_url + "SHA256SUMS"));
    ASSIGN_OR_RETURN(files, ParseSha256Sums(manifest));
    log::Info() << "fetch-model: " << files.size() << " files listed by " << remote.base_url << "SHA256SUMS";
  }
  for (const ExpectedFile& file : files) {
    const fs::path dest = fs::path(options.dest) / file.path;
    std::error_code ec;
    fs::create_directories(dest.parent_path(), ec);
    if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create ", dest.parent_path().string(), ": ", ec.message()));
    if (AlreadyThere(file, dest)) {
      log::Info() << "fetch-model: " << file.path << " already there, checksum matches";
      continue;
    }
    RETURN_IF_ERROR(fetcher->File(file, dest));
  }
  log::Info() << "fetch-model: " << options.dest << " complete, every file verified";
  return absl::OkStatus();
}

}  // namespace tessera::cli
