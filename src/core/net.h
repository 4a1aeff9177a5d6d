// Why a socket operation fails, in the OS's words. Libraries such as cpp-httplib and Paho only
// report that binding or connecting failed; these probes repeat the operation once to say why
// ("Address already in use", "Connection refused"), so an error line names the cause.
#pragma once

#include <chrono>
#include <string>

namespace tend::net {

// Why listening on host:port fails, e.g. "Address already in use" or "Cannot assign requested
// address" (never empty: "it failed, but the address is free now" when a listen works now).
std::string ProbeBind(const std::string& host, int port);

// Why a TCP connection to host:port fails: "Connection refused", "No route to host",
// "timed out after 2 s", "cannot resolve host 'x': Name or service not known"; "" when it
// connects. Blocks for at most `timeout` plus name resolution.
std::string ProbeConnect(const std::string& host, int port, std::chrono::milliseconds timeout);

// Socket options for a listening socket: SO_REUSEADDR (a restart binds at once despite old
// connections in TIME_WAIT) and not SO_REUSEPORT, which cpp-httplib sets by default and which
// lets a second server of the same user bind the same port and silently take half of its
// connections (two agents' metrics answering one scrape target in turns). With this, the second
// one fails with "Address already in use".
void ExclusiveListenOptions(int fd);

}  // namespace tend::net
