// The servers' typed configurations (coordinator/config.h, worker/config.h): the flags
// fill the options the servers run with, defaults are the options' own, and every
// TESSERA_* variable the Helm chart sets is a flag of one of the two binaries.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "common/flags.h"
#include "coordinator/config.h"
#include "worker/config.h"

namespace tessera {
namespace {

TEST(CoordinatorConfigTest, DefaultsAreTheOptionsOwn) {
  const char* argv[] = {"tessera-coordinator", "--model", "/models/tiny"};
  coordinator::CoordinatorConfig config;
  ASSERT_EQ(coordinator::ParseCoordinatorConfig(3, argv, &config), std::nullopt);
  const coordinator::ClusterOptions defaults;
  EXPECT_EQ(config.model_dir, "/models/tiny");
  EXPECT_EQ(config.cluster.group.model_dir, "/models/tiny");
  EXPECT_EQ(config.frontend.model_name, "tiny");
  EXPECT_EQ(config.listen, "127.0.0.1:50051");
  EXPECT_EQ(config.cluster.group.block_size, defaults.group.block_size);
  EXPECT_EQ(config.cluster.group.kv_memory_bytes, defaults.group.kv_memory_bytes);
  EXPECT_EQ(config.cluster.group.prefix_caching, defaults.group.prefix_caching);
  EXPECT_EQ(config.cluster.heartbeat_timeout, defaults.heartbeat_timeout);
  EXPECT_EQ(config.frontend.max_queue, coordinator::FrontendOptions{}.max_queue);
}

TEST(CoordinatorConfigTest, FlagsFillTheOptionsInTheirUnits) {
  const char* argv[] = {"tessera-coordinator", "--model=/m", "--kv-memory-mb", "64", "--heartbeat-timeout-ms", "900",
                        "--tp", "2", "--prefix-caching", "0", "--batch-invariant", "1", "--model-name", "chat"};
  coordinator::CoordinatorConfig config;
  ASSERT_EQ(coordinator::ParseCoordinatorConfig(14, argv, &config), std::nullopt);
  EXPECT_EQ(config.cluster.group.kv_memory_bytes, int64_t{64} << 20);
  EXPECT_EQ(config.cluster.heartbeat_timeout, std::chrono::milliseconds(900));
  EXPECT_EQ(config.cluster.group.tp, 2);
  EXPECT_EQ(config.frontend.tensor_parallel, 2);
  EXPECT_FALSE(config.cluster.group.prefix_caching);
  EXPECT_TRUE(config.cluster.group.batch_invariant);
  EXPECT_TRUE(config.frontend.batch_invariant);
  EXPECT_EQ(config.frontend.model_name, "chat");
}

TEST(CoordinatorConfigTest, MissingModelOrBadValuesExitTwo) {
  coordinator::CoordinatorConfig config;
  const char* none[] = {"tessera-coordinator"};
  EXPECT_EQ(coordinator::ParseCoordinatorConfig(1, none, &config), std::optional<int>(kUsageExit));
  const char* zero[] = {"tessera-coordinator", "--model", "/m", "--block-size", "0"};
  EXPECT_EQ(coordinator::ParseCoordinatorConfig(5, zero, &config), std::optional<int>(kUsageExit));
}

TEST(WorkerConfigTest, DeviceAndCollectivesBecomeOptions) {
  const char* argv[] = {"tessera-worker", "--coordinator", "10.0.0.1:50051", "--device", "cuda:1",
                        "--gpu-collectives", "gloo", "--threads", "3", "--busy-poll"};
  worker::WorkerConfig config;
  ASSERT_EQ(worker::ParseWorkerConfig(10, argv, &config), std::nullopt);
  EXPECT_EQ(config.options.cuda_device, 1);
  EXPECT_TRUE(config.options.gloo_on_gpu);
  EXPECT_EQ(config.options.threads, 3);
  EXPECT_TRUE(config.options.busy_poll);
  EXPECT_EQ(config.options.coordinator_address, "10.0.0.1:50051");
  const char* bad[] = {"tessera-worker", "--coordinator", "x:1", "--device", "gpu"};
  EXPECT_EQ(worker::ParseWorkerConfig(5, bad, &config), std::optional<int>(kUsageExit));
}

// The chart configures the binaries through TESSERA_* variables only; a renamed flag
// would silently drop a setting, so each variable must be a flag of the binary whose
// ConfigMap or pod template sets it.
std::string ChartFile(const std::string& name) {
  std::ifstream in(std::string(TESSERA_SOURCE_DIR) + "/deploy/helm/tessera/templates/" + name);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The body of a named template in _helpers.tpl, up to the next definition.
std::string HelperBlock(const std::string& name) {
  const std::string helpers = ChartFile("_helpers.tpl");
  const size_t begin = helpers.find("define \"" + name + "\"");
  if (begin == std::string::npos) return "";
  return helpers.substr(begin, helpers.find("{{- define", begin + 1) - begin);
}

int CheckVariables(const std::string& text, const std::string& help, const std::string& where) {
  int checked = 0;
  const std::regex variable("(TESSERA_[A-Z0-9_]+)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), variable); it != std::sregex_iterator(); ++it) {
    EXPECT_NE(help.find("Env:" + (*it)[1].str()), std::string::npos) << (*it)[1] << " in " << where;
    ++checked;
  }
  return checked;
}

TEST(ServerConfigTest, EveryChartVariableIsAFlagOfItsBinary) {
  const std::string coordinator = coordinator::CoordinatorHelp(), worker = worker::WorkerHelp();
  const std::string tls = HelperBlock("tessera.internalTlsConfig");
  EXPECT_GE(CheckVariables(HelperBlock("tessera.coordinatorConfig") + tls, coordinator, "the coordinator's ConfigMap"),
            10);
  EXPECT_GE(CheckVariables(HelperBlock("tessera.workersConfig") + tls, worker, "the workers' ConfigMap"), 5);
  CheckVariables(ChartFile("coordinator.yaml"), coordinator, "coordinator.yaml");
  EXPECT_GE(CheckVariables(ChartFile("workers.yaml"), worker, "workers.yaml"), 1);
}

}  // namespace
}  // namespace tessera
