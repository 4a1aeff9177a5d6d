// systemd's service notification protocol (sd_notify(3)) without linking libsystemd: datagrams to
// the unix socket named by $NOTIFY_SOCKET. With Type=notify, "READY=1" tells systemd the agent is
// deciding (model loaded and warm); with WatchdogSec=, "WATCHDOG=1" must arrive at least every
// $WATCHDOG_USEC or systemd restarts the service. Every call is a no-op outside systemd.
#pragma once

#include <chrono>
#include <string>

#include "core/status.h"

namespace tend::sd {

// True when $NOTIFY_SOCKET is set (a path, or "@name" for the abstract namespace).
bool NotifyEnabled();

// Sends `state` ("READY=1", "STOPPING=1", "WATCHDOG=1", "STATUS=...", several joined by '\n').
// Ok when not under systemd; an error naming the socket if the send fails.
Status Notify(const std::string& state);

// The watchdog period systemd asks for ($WATCHDOG_USEC, only when $WATCHDOG_PID is unset or is
// this process); zero when there is none.
std::chrono::microseconds WatchdogInterval();

}  // namespace tend::sd
