// Sharing a group between tenants and priorities: the waiting queue's order (priority,
// then weighted fair queuing by tenant) and the scheduler giving a full batch's slot to
// a better-priority request or to a tenant under its fair share.
#include <gtest/gtest.h>

#include "coordinator/scheduler.h"
#include "coordinator/waiting_queue.h"

namespace tessera::coordinator {
namespace {

std::shared_ptr<Request> Make(const std::string& id, const std::string& tenant, int32_t priority = 0,
                              double weight = 1, int max_tokens = 4) {
  v1::SamplingParams p;
  p.set_max_tokens(max_tokens);
  p.set_temperature(0);
  auto r = std::make_shared<Request>(id, std::vector<int32_t>(4, 7), p, /*seed=*/1, /*skip_special_tokens=*/true,
                                     /*tokenizer=*/nullptr, StopContext{4096, {}});
  r->set_tenant(tenant);
  r->set_priority(priority);
  r->set_share_weight(weight);
  return r;
}

std::vector<std::string> Drain(WaitingQueue& q) {
  std::vector<std::string> order;
  while (auto r = q.Next()) {
    order.push_back(r->id());
    q.PopNext();
  }
  return order;
}

// One tenant's flood does not push another's request behind it: the second tenant's
// request goes after at most one of the flood's.
TEST(FairShareTest, AFloodingTenantDelaysAnotherByOneAdmission) {
  WaitingQueue q;
  for (int i = 0; i < 50; ++i) q.Push(Make("a" + std::to_string(i), "a"));
  q.PopNext();  // a0 admitted: tenant a is charged
  q.Push(Make("b0", "b"));
  EXPECT_EQ(q.Next()->id(), "b0");
  q.PopNext();
  EXPECT_EQ(q.Next()->id(), "a1");
  EXPECT_EQ(q.size(), 49u);
}

// Both busy: admissions alternate by weight (a has twice b's), each tenant's own
// requests in arrival order.
TEST(FairShareTest, WeightsSetEachTenantsShareOfAdmissions) {
  WaitingQueue q;
  for (int i = 0; i < 6; ++i) q.Push(Make("a" + std::to_string(i), "a", 0, 2.0));
  for (int i = 0; i < 3; ++i) q.Push(Make("b" + std::to_string(i), "b", 0, 1.0));
  const std::vector<std::string> order = Drain(q);
  ASSERT_EQ(order.size(), 9u);
  // In every prefix of the order, a has about twice b's admissions.
  int a = 0, b = 0;
  for (const std::string& id : order) {
    (id[0] == 'a' ? a : b)++;
    EXPECT_LE(std::abs(a - 2 * b), 2) << id;
  }
  EXPECT_EQ(std::vector<std::string>(order.begin(), order.begin() + 1), std::vector<std::string>{"a0"});
}

// Lower priority values go first whatever the tenants; a tenant back from idle gets no
// credit for the time it had nothing waiting.
TEST(FairShareTest, PriorityFirstAndNoCreditForIdling) {
  WaitingQueue q;
  q.Push(Make("late-low", "a", 5));
  q.Push(Make("urgent", "b", -1));
  q.Push(Make("normal", "a", 0));
  EXPECT_EQ(Drain(q), (std::vector<std::string>{"urgent", "normal", "late-low"}));
  for (int i = 0; i < 20; ++i) {
    q.Push(Make("a" + std::to_string(i), "a"));
    q.PopNext();  // a is busy alone for a while
  }
  for (int i = 0; i < 3; ++i) q.Push(Make("b" + std::to_string(i), "b"));
  q.Push(Make("a-next", "a"));
  const std::vector<std::string> order = Drain(q);
  // b, idle so far, does not get 20 admissions in a row: it starts level with a.
  EXPECT_NE(std::find(order.begin(), order.begin() + 3, "a-next"), order.begin() + 3);
}

// A full batch held by one tenant gives a slot to another tenant's request (the newest
// of the flood is preempted and waits again, first among its tenant's), and to a
// better-priority request; a tenant over its share is not given one.
TEST(FairShareTest, AFullBatchMakesRoomForATenantUnderItsShare) {
  SchedulerOptions options;
  options.cache.block_size = 4;
  options.cache.num_blocks = 64;
  options.max_step_tokens = 512;
  options.max_running = 4;
  Scheduler s(options);
  for (int i = 0; i < 10; ++i) s.Enqueue(Make("a" + std::to_string(i), "a", 0, 1, 100));
  StepPlan plan;
  ASSERT_TRUE(s.BuildStep(&plan));
  EXPECT_EQ(s.num_running(), 4);
  EXPECT_EQ(s.num_waiting(), 6);

  s.Enqueue(Make("b0", "b", 0, 1, 100));
  ASSERT_TRUE(s.BuildStep(&plan));
  EXPECT_EQ(s.num_running(), 4);
  EXPECT_EQ(s.preemptions(), 1);
  EXPECT_EQ(s.num_waiting(), 7) << "b0 runs; the newest of a's waits again";

  // Now a's turn in the queue again (its preempted request first), and a is over its
  // share of 2 slots: no one is preempted for it, nor for b's next request behind it.
  s.Enqueue(Make("b1", "b", 0, 1, 100));
  ASSERT_TRUE(s.BuildStep(&plan));
  EXPECT_EQ(s.preemptions(), 1);

  // Priority beats fair share: a request of a better priority always gets a slot.
  s.Enqueue(Make("urgent", "a", -1, 1, 100));
  ASSERT_TRUE(s.BuildStep(&plan));
  EXPECT_EQ(s.preemptions(), 3);
}

}  // namespace
}  // namespace tessera::coordinator
