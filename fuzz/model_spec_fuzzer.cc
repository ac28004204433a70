// config.json -> ModelSpec (models::ParseModelSpec) on arbitrary bytes: a spec or a
// status, never a crash; and a spec that is accepted has the shape the engine relies
// on (positive sizes, query heads a multiple of the KV heads, top-k within the experts).
#include <cstdint>
#include <string>

#include "models/model_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto spec = tessera::models::ParseModelSpec(std::string(reinterpret_cast<const char*>(data), size));
  if (!spec.ok()) return 0;
  const bool sane = spec->vocab_size > 0 && spec->hidden_size > 0 && spec->num_layers > 0 && spec->num_heads > 0 &&
                    spec->num_kv_heads > 0 && spec->num_heads % spec->num_kv_heads == 0 && spec->head_dim > 0 &&
                    spec->intermediate_size > 0 && spec->max_position_embeddings > 0 &&
                    static_cast<int>(spec->sliding_window.size()) == spec->num_layers &&
                    (!spec->is_moe() || (spec->experts_per_token > 0 && spec->experts_per_token <= spec->num_experts));
  if (!sane) __builtin_trap();
  return 0;
}
