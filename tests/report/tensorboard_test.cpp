// TensorBoard event files read back by an independent reader (tests/controller/event_file_reader.h):
// its bit-at-a-time CRC-32C checked against the standard check value, then the framing, the CRCs and
// the Event fields of what EventFileWriter and MetricsWriter wrote.
#include "report/tensorboard.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "report/metrics.h"
#include "tests/report/event_file_reader.h"
#include "tests/test_util.h"

namespace llamarl {
namespace {

namespace fs = std::filesystem;
using testing::BitwiseCrc32c;

TEST(Tensorboard, Crc32cMatchesTheStandardCheckValue) {
  // The CRC catalogue's check value of CRC-32C (iSCSI): the CRC of the ASCII digits 1-9.
  EXPECT_EQ(BitwiseCrc32c("123456789"), 0xe3069283u);
  EXPECT_EQ(Crc32c("123456789", 9), 0xe3069283u);
  std::string bytes;
  for (int i = 0; i < 1000; ++i) bytes.push_back(char((i * 131 + 7) % 256));
  EXPECT_EQ(Crc32c(bytes.data(), bytes.size()), BitwiseCrc32c(bytes));
  EXPECT_EQ(Crc32c("", 0), 0u);
}

TEST(Tensorboard, EventFileReadsBackWithItsChecksums) {
  const std::string dir = testing::MakeTempDir("tensorboard_events");
  std::string path;
  {
    EventFileWriter w(dir);
    path = w.path();
    w.AddText("recipe", "    {\"steps\": 3}\n", 0);
    w.AddScalar("loss", 0.25, 7);
    w.AddScalar("reward_mean", -1.5, 300000000000);
  }
  EXPECT_EQ(fs::path(path).filename().string().rfind("events.out.tfevents.", 0), 0u);
  const std::vector<testing::EventRecord> events = testing::ReadEventFile(path);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].file_version, "brain.Event:2");
  EXPECT_GT(events[0].wall_time, 1.6e9);
  EXPECT_EQ(events[1].texts.at("recipe"), "    {\"steps\": 3}\n");
  EXPECT_EQ(events[2].step, 7);
  EXPECT_EQ(events[2].scalars.at("loss"), 0.25f);
  EXPECT_EQ(events[3].step, 300000000000);
  EXPECT_EQ(events[3].scalars.at("reward_mean"), -1.5f);
}

TEST(Tensorboard, MetricsRowsBecomeScalarsAtTheirStep) {
  const std::string dir = testing::MakeTempDir("tensorboard_metrics");
  std::string path;
  {
    MetricsWriter metrics(dir + "/metrics.jsonl");
    auto events = std::make_unique<EventFileWriter>(dir);
    path = events->path();
    metrics.AttachEventFile(std::move(events));
    metrics.Write({{"step", 4}, {"rl_step", 2}, {"phase", "rl"}, {"loss", 0.5}, {"tokens", 96}, {"skipped", true},
                   {"kl", nullptr}});
  }
  const std::vector<testing::EventRecord> events = testing::ReadEventFile(path);
  std::map<std::string, float> scalars;
  for (const auto& e : events) {
    for (const auto& [tag, value] : e.scalars) {
      EXPECT_EQ(e.step, 4) << tag;
      scalars[tag] = value;
    }
  }
  EXPECT_EQ(scalars, (std::map<std::string, float>{{"loss", 0.5f}, {"tokens", 96.0f}, {"skipped", 1.0f}}));
  // A corrupted byte is caught by the data CRC.
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(20);
    f.put('\x7f');
  }
  EXPECT_THROW(testing::ReadEventFile(path), std::runtime_error);
}

}  // namespace
}  // namespace llamarl
