// A process running a Sparkplug edge node, for the tests that kill it: connects, births one
// device, publishes a few decisions, prints "session bdseq=N" once in session, then waits to be
// killed. Usage: sparkplug_helper BROKER_URL STATE_DIR GROUP NODE DEVICE
#include <chrono>
#include <cstdio>
#include <thread>

#include "telemetry/sparkplug_node.h"

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s BROKER_URL STATE_DIR GROUP NODE DEVICE\n", argv[0]);
    return 2;
  }
  tend::sparkplug::SparkplugOptions o;
  o.broker_url = argv[1];
  o.state_dir = argv[2];
  o.group_id = argv[3];
  o.edge_node_id = argv[4];
  o.reconnect_min_s = 0.05;
  o.reconnect_max_s = 0.5;
  auto node = tend::sparkplug::SparkplugNode::Create(o);
  if (!node) {
    std::fprintf(stderr, "%s\n", node.error().message.c_str());
    return 1;
  }
  auto dev = (*node)->AddDevice(argv[5]);
  if (!dev) return 1;
  for (int i = 0; i < 3; ++i) {
    tend::Decision d;
    d.window_index = i;
    d.timestamp = std::chrono::system_clock::now();
    d.anomaly_score = 0.1f * static_cast<float>(i + 1);
    (*dev)->OnDecision(d);
  }
  if (!(*node)->Flush(std::chrono::seconds(20))) return 1;
  std::printf("session bdseq=%lld\n", static_cast<long long>((*node)->stats().bd_seq));
  std::fflush(stdout);
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}
