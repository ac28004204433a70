// tessera fetch-model: a model folder copied or downloaded into a directory, every file
// verified against a checksum before it takes its name there. It is what the Helm
// chart's weights initContainer runs (docs/deploy.md, "Getting weights in").
//
// Sources:
//   hf://ORG/NAME[@REVISION]   a HuggingFace Hub or a mirror of it (--hf-endpoint);
//                              the file list and checksums from the Hub's API (LFS
//                              files: their SHA-256; others: their git blob SHA-1),
//                              every file from one commit
//   https://HOST/PATH/, http:// a folder served over HTTP, listed with checksums by
//                              its SHA256SUMS (sha256sum's format)
//   s3://BUCKET/PREFIX         the same in an S3-compatible bucket (--s3-endpoint,
//                              path-style, signed with AWS SigV4 when
//                              AWS_ACCESS_KEY_ID is set, anonymous otherwise)
//   DIR or file:///DIR         a local folder with its SHA256SUMS (e.g. an OCI image
//                              mounted as a volume)
//
// Downloads go through libcurl (redirects, proxies from the environment, the system's
// CA certificates or --ca-file) and are retried. A file already in the destination with
// the right checksum is kept; a bad one is never left under its name.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace tessera::cli {

struct FetchOptions {
  std::string source;
  std::string dest;
  std::string hf_endpoint = "https://huggingface.co";
  std::string s3_endpoint;           // e.g. https://minio.internal:9000
  std::string s3_region = "us-east-1";
  std::string ca_file;               // a CA bundle for a private mirror
  // hf:// only: which of the repository's files (fnmatch patterns on the path).
  std::vector<std::string> include = {"*.json", "*.safetensors", "tokenizer.model", "*.txt", "*.jinja"};
  int retries = 3;
  bool quiet = false;
};

// One file of the model and what its content must hash to.
struct ExpectedFile {
  enum class Digest { kSha256, kGitBlobSha1 };
  std::string path;  // relative, '/'-separated
  Digest digest = Digest::kSha256;
  std::string hex;   // lowercase
  int64_t size = -1;  // -1: unknown
};

// Parses sha256sum's output ("HEX  PATH" or "HEX *PATH" per line). Refuses absolute
// paths and "..", so a manifest cannot write outside the destination.
absl::StatusOr<std::vector<ExpectedFile>> ParseSha256Sums(const std::string& text);

// The files of a HuggingFace Hub answer to /api/models/REPO/revision/REV?blobs=true,
// filtered by `include`.
absl::StatusOr<std::vector<ExpectedFile>> ParseHubFiles(const std::string& json, const std::vector<std::string>& include);

// Fetches the model; the error names the file and what went wrong.
absl::Status FetchModel(const FetchOptions& options);

}  // namespace tessera::cli
