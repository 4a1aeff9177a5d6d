#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "core/log.h"

namespace tend::cli {

void Die(const Error& error, int code) {
  std::fprintf(stderr, "tend: error: %s\n", error.message.c_str());
  std::fflush(stderr);
  throw ExitCode{code};
}
void Die(const std::string& message, int code) { Die(Error::Invalid(message), code); }

}  // namespace tend::cli

int main(int argc, char** argv) {
  using namespace tend;
  CLI::App app{"tend: edge-AI runtime for factory machines"};
  app.set_version_flag("--version", std::string("tend ") + TEND_VERSION);
  app.require_subcommand(1);
  bool log_json = false;
  std::string log_level = "info";
  app.add_flag("--log-json", log_json, "Log as JSON lines instead of human-readable text");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  app.parse_complete_callback([&] { log::Init(log_json, log_level); });

  cli::RegisterRun(app);
  cli::RegisterTrain(app);
  cli::RegisterScore(app);
  cli::RegisterEval(app);
  cli::RegisterSimulate(app);
  cli::RegisterDoctor(app);
  cli::RegisterBench(app);
  cli::RegisterQuantize(app);
  cli::RegisterCompare(app);
  cli::RegisterWindows(app);
  cli::RegisterKeygen(app);
  cli::RegisterPublish(app);
  cli::RegisterRegistry(app);
  cli::RegisterOta(app);
  cli::RegisterFleet(app);
  cli::RegisterPki(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() != 0) {
      std::fprintf(stderr, "tend: error: %s\n", e.what());
      return 2;
    }
    return app.exit(e);
  } catch (const cli::ExitCode& e) {
    return e.code;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tend: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
