// The device side of OTA: poll the registry, verify the whole metadata chain and the exact model
// bytes, stage the file next to the running one (temp + fsync + rename), run the quality gate,
// then commit the new state crash-safely and hand the model to the pipeline, keeping the previous
// one as a backup; roll back on a failed gate, a failed hand-over or misbehaviour in probation.
// Refused updates never touch the state file or the model directory.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/status.h"
#include "ota/fetch.h"
#include "ota/metadata.h"
#include "ota/rollout.h"

namespace tend::ota {

inline constexpr char kStateFile[] = "ota_state.json";

struct ModelSlot {
  std::string file;  // name inside the model directory
  int64_t version = 0;
  std::string sha256;
  int64_t length = 0;
  int64_t installed_unix = 0;
  double quality = -1;  // gate score at install (-1: none measured)
};

// Everything the device must remember across power cuts, in one file written atomically.
struct OtaState {
  std::string model_name;
  std::string trusted_root;  // the exact bytes of the newest verified root.json
  int64_t root_version = 0, timestamp_version = 0, targets_version = 0;
  int64_t latest_time_seen = 0;  // unix s; the device clock is never trusted below this
  int64_t highest_version = 0;   // highest model version installed or refused by the gate
  std::vector<int64_t> rejected_versions;
  std::optional<ModelSlot> current, backup;
  int64_t probation_until = 0;
  int64_t rollbacks = 0;
  std::string last_rollback_reason;
  // SHA-256 of the last local start-up model (--model) adopted (as its card's version, 0 when
  // it has none; see AdoptStartupModel); "" when none.
  std::string adopted_sha256;
  // From the newest valid control.json (rollout.h): its version (a floor against replays) and
  // this device's pin (-1: none), kept when a later statement cannot be had.
  int64_t control_version = 0;
  int64_t pin_max_version = -1;

  nlohmann::json ToJson() const;
  static Result<OtaState> FromJson(const nlohmann::json& j, const std::string& what);
};

Result<OtaState> LoadState(const std::string& model_dir);  // kNotFound when there is none
Status SaveState(const std::string& model_dir, const OtaState& state);

// Makes the backup current again in the state file and deletes the model rolled back from: its
// version is rejected for good and it never becomes a rollback target (after a rollback the backup
// slot is empty until the next update). Fails when there is no backup, or the backup file is
// missing or does not match its hash. Holds the state lock, so a running agent's updater never
// overwrites it; the updater notices the change within `state_watch_s` and hands the model over.
Result<OtaState> RollbackState(const std::string& model_dir, const std::string& reason,
                               int64_t now);

// Startup repair after a crash: removes staging leftovers and model files the state does not
// reference, and falls back to the backup when the current file is missing or corrupt.
Result<OtaState> RecoverState(const std::string& model_dir);

// The status fields derived from a state at `now` (unix s), shared by the agent's updater
// (StatusJson) and `tend ota status`: versions, "state" (no-model | probation | serving),
// probation end, model install time and age, staleness against max_model_age_s.
nlohmann::json StateStatusJson(const OtaState& state, int64_t now, int64_t max_model_age_s);

struct UpdaterOptions {
  std::string model_dir;
  std::string model_name;
  std::string profile;
  std::string pinned_root_path;  // trust anchor used when the state holds no root yet
  // This device's id: picks its wave in staged rollouts and its entries in control.json.
  // Default: the host name (what `tend run` uses when no --device-id is given).
  std::string device_id;
  double min_quality = 0;        // deployment threshold; the gate uses max(this, signed value)
  double interval_s = 3600;
  double jitter = 0.1;          // each wait is interval * (1 +- jitter), so fleets spread out
  // control.json (staged rollouts, operator rollbacks and pins) is polled this often between
  // full checks; 0: min(interval_s, 60).
  double control_interval_s = 0;
  // The state file is re-read this often, so a rollback made by another process (`tend ota
  // rollback`) reaches the pipeline through on_commit; 0: never.
  double state_watch_s = 1;
  int64_t probation_s = 86400;  // misbehaviour reported within this window rolls back
  int64_t max_model_age_s = 8 * 7 * 86400;  // staleness alert after this
  int64_t max_metadata_bytes = 1 << 20;
  int max_root_rotations = 32;
  std::function<int64_t()> clock;  // unix seconds; default: system clock
  // Loads the staged candidate the way the pipeline will (a second session) and checks its
  // contract, e.g. that its inputs match the feature spec; an error refuses it.
  std::function<Status(const std::string& candidate_path)> load_check;
  // Scores a staged candidate on the local reference set (higher is better); an error refuses it.
  std::function<Result<double>(const std::string& candidate_path)> quality_gate;
  // Without a quality gate, a release that asks for a minimum quality is refused unless this is
  // set (an operator's explicit choice; the state then records quality -1: not measured).
  bool allow_unmeasured_quality = false;
  // Ends the refusal above with the way out, in the caller's terms (the CLI names its flag).
  std::string allow_unmeasured_hint = "set allow_unmeasured_quality to install it unmeasured";
  // Hands the committed model to the pipeline; an error rolls the state back.
  std::function<Status(const std::string& model_path)> on_commit;
  // Test hook: called at every durable step ("staged-temp", "staged", "gated", "committed",
  // "handed-over", "cleaned"); a crash test kills the process there.
  std::function<void(const char* step)> sync_point_for_test;
};

enum class UpdateOutcome { kUpToDate, kInstalled, kRejectedByGate };

struct UpdateReport {
  UpdateOutcome outcome = UpdateOutcome::kUpToDate;
  int64_t version = 0;
  double quality = -1;
  std::string message;
};

class Updater {
 public:
  static Result<std::unique_ptr<Updater>> Create(UpdaterOptions opts,
                                                 std::unique_ptr<Fetcher> fetcher);
  ~Updater();

  // One poll: refresh the trust chain, and install the newest release for this profile if any.
  Result<UpdateReport> CheckOnce();
  // The model the device is started with (--model): when OTA has no model yet, or the file now
  // holds other bytes than the one adopted last time (the operator deployed a new one), a copy
  // becomes the current model (the previous current, if any, is its backup), so the first OTA
  // update has a proven model to roll back to and staleness counts from it. Otherwise the model
  // OTA installed since wins. Returns the path the agent must serve. Does not call on_commit
  // (the agent is not running yet). The adopted model never raises the anti-rollback floor.
  // `version` is the version the model carries itself (its card's), so that the log, the metrics
  // and OTA show one version for it; 0 only when it has no numeric version.
  Result<std::string> AdoptStartupModel(const std::string& path, int64_t version = 0);
  // Back to the backup, e.g. when the lead sees the new model misbehave; calls on_commit.
  Status Rollback(const std::string& reason);
  // Adopts a change another process made to the state file (`tend ota rollback`): the new current
  // model goes to on_commit. Returns whether the file had changed. Start() calls it every
  // state_watch_s.
  bool PollStateFile();
  // Fetches and verifies control.json: updates this device's pin and the replay floor, and runs
  // an operator rollback addressed to this device. Returns true when the statement changed (a
  // full check may now install). Start() calls it every control_interval_s.
  Result<bool> CheckControl();
  // Rolls back when called within the probation period of the current model; else only logs.
  Status ReportMisbehaviour(const std::string& reason);
  // True while the current model is in probation (installed by OTA, with a backup to go back to).
  bool InProbation() const;
  // Logs a warning when the model is stale, at most once per 24 h of the updater's clock (again
  // at once after a fresh model went stale again); returns whether it logged.
  bool WarnIfStale();

  // Background polling with jitter; Stop() interrupts the wait and any fetch in flight (a load
  // check or quality gate already running is finished first).
  void Start();
  void Stop();

  // These read a snapshot taken after every check or rollback, so they never wait for a
  // download in flight (a metrics scrape or the MQTT status can call them at any time).
  std::string CurrentModelPath() const;  // "" when OTA has not installed a model yet
  OtaState state() const;
  bool Stale() const;
  // For MQTT status and metrics: StateStatusJson() plus last check/result/error and counters
  // since start ("updates": installed, refused, rolled_back, failed; "checks").
  nlohmann::json StatusJson() const;

  // Since this process started.
  struct Counters {
    int64_t checks = 0;
    int64_t installed = 0;    // committed and handed over to the pipeline
    int64_t refused = 0;      // refused by the load check or the quality gate (never committed)
    int64_t rolled_back = 0;  // back to the backup after a commit (hand-over, misbehaviour, manual)
    int64_t failed = 0;       // checks that ended in an error (registry, network, trust)
  };

 private:
  struct Snapshot {
    OtaState state;
    Counters counters;
    int64_t last_check_unix = 0;
    std::string last_result, last_error;
  };
  Updater() = default;
  int64_t Now() const;
  int64_t NowAtLeast(int64_t latest_time_seen) const;
  Result<UpdateReport> CheckLocked();
  Result<TargetsMeta> RefreshTrustLocked(OtaState& next, RootMeta& root, int64_t now);
  Result<std::string> WaitReasonLocked(const TargetInfo& target, const RootMeta& root,
                                       OtaState& next, int64_t now);
  Result<std::string> StageLocked(const TargetInfo& target);
  std::string JudgeLocked(const std::string& path, double threshold, double* quality);
  Status UndoHandOverLocked(int64_t version, const std::string& why);
  Status RollbackLocked(const std::string& reason);
  // Writes `next` unless another process changed the file since this updater last read or wrote
  // it (then nothing is written and the change is adopted by the next PollStateFile).
  Status PersistLocked(const OtaState& next);
  bool AdoptDiskStateLocked();
  // control.json, verified; nullopt when the registry has none or it is not valid now. Updates
  // next's control floor and pin.
  std::optional<ControlMeta> FetchControlLocked(const RootMeta& root, OtaState& next, int64_t now);
  void RunLoop();
  void Sync(const char* step) const;
  void PublishLocked();  // mu_ held: copies what the readers see
  Snapshot Snap() const;

  UpdaterOptions opts_;
  std::unique_ptr<Fetcher> fetcher_;
  mutable std::mutex mu_;
  OtaState state_;
  Counters counters_;
  int64_t last_check_unix_ = 0;
  std::string last_result_, last_error_;
  std::string known_text_;  // the state file's bytes as this updater last read or wrote them
  std::string last_control_error_;
  std::vector<std::string> handled_requests_;  // operator rollbacks already acted on
  mutable std::mutex snap_mu_;
  Snapshot snap_;
  int64_t last_stale_warning_ = 0;  // guarded by snap_mu_

  std::thread thread_;
  std::mutex wait_mu_;
  std::condition_variable wait_cv_;
  bool stop_ = false;
};

}  // namespace tend::ota
