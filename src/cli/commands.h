// The `tend` command: each subcommand lives in its own cmd_<name>.cc and is registered
// explicitly from main.cc. Subcommands parse flags, call one module, and print; nothing more.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "core/status.h"

namespace tend::cli {

// Thrown by a subcommand to end the process with `code` (caught in main).
struct ExitCode {
  int code;
};

// Prints "tend: error: <message>" as one line on stderr and ends the command with `code`.
[[noreturn]] void Die(const Error& error, int code = 1);
[[noreturn]] void Die(const std::string& message, int code = 1);

// Unwraps a Result or dies with its error.
template <typename T>
T OrDie(Result<T> r, const std::string& context = {}) {
  if (!r) Die(context.empty() ? r.error() : r.error().Wrap(context));
  return std::move(*r);
}
inline void OrDie(Status s, const std::string& context = {}) {
  if (!s) Die(context.empty() ? s.error() : s.error().Wrap(context));
}

// Registration functions, one per subcommand (called from main.cc in this order).
void RegisterDoctor(CLI::App& app);
void RegisterTrain(CLI::App& app);
void RegisterScore(CLI::App& app);
void RegisterEval(CLI::App& app);
void RegisterRun(CLI::App& app);
void RegisterSimulate(CLI::App& app);
void RegisterBench(CLI::App& app);
void RegisterQuantize(CLI::App& app);
void RegisterCompare(CLI::App& app);
void RegisterWindows(CLI::App& app);
void RegisterKeygen(CLI::App& app);
void RegisterPublish(CLI::App& app);
void RegisterRegistry(CLI::App& app);
void RegisterOta(CLI::App& app);
void RegisterFleet(CLI::App& app);
// `tend fleet serve|token|simulate` (cmd_fleet_console.cc), added to the fleet subcommand.
void RegisterFleetConsole(CLI::App& fleet);
void RegisterPki(CLI::App& app);

}  // namespace tend::cli
