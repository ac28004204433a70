// delay_line: a link with latency, for network-namespace tests on kernels without
// netem. Creates two TAP devices and copies every Ethernet frame from one to the
// other, in both directions, `delay` later (in order; no loss, no reordering).
//
//   delay_line --a DEV --b DEV --delay-ms N [--ready-file FILE]
//
// The devices are created in the caller's namespace; move them where they belong
// (ip link set DEV netns NS) once FILE exists. Runs until killed.
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

int OpenTap(const std::string& name) {
  const int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) return -1;
  ifreq ifr{};
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

struct Frame {
  Clock::time_point due;
  std::vector<char> bytes;
};

// Frames read from `from`, written to `to` once due.
void Forward(int from, int to, Clock::duration delay) {
  std::deque<Frame> queue;
  std::vector<char> buffer(65536);
  while (true) {
    int timeout = -1;
    if (!queue.empty()) {
      const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(queue.front().due - Clock::now());
      timeout = static_cast<int>(std::max<int64_t>(0, wait.count()));
    }
    pollfd p{from, POLLIN, 0};
    if (poll(&p, 1, timeout) > 0) {
      const ssize_t n = read(from, buffer.data(), buffer.size());
      if (n > 0) queue.push_back({Clock::now() + delay, std::vector<char>(buffer.begin(), buffer.begin() + n)});
    }
    while (!queue.empty() && queue.front().due <= Clock::now()) {
      (void)!write(to, queue.front().bytes.data(), queue.front().bytes.size());  // a full device drops, as a link would
      queue.pop_front();
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string a, b, ready;
  int delay_ms = -1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--a") a = value;
    else if (flag == "--b") b = value;
    else if (flag == "--delay-ms") delay_ms = std::atoi(value.c_str());
    else if (flag == "--ready-file") ready = value;
  }
  if (a.empty() || b.empty() || delay_ms < 0) {
    std::fprintf(stderr, "usage: delay_line --a DEV --b DEV --delay-ms N [--ready-file FILE]\n");
    return 2;
  }
  const int fa = OpenTap(a), fb = OpenTap(b);
  if (fa < 0 || fb < 0) {
    std::fprintf(stderr, "delay_line: cannot create TAP devices %s, %s: %s\n", a.c_str(), b.c_str(), std::strerror(errno));
    return 1;
  }
  if (!ready.empty()) std::ofstream(ready) << "ready\n";
  const auto delay = std::chrono::milliseconds(delay_ms);
  std::thread back([&] { Forward(fb, fa, delay); });
  Forward(fa, fb, delay);
}
