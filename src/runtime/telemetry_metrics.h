// The adapters between telemetry and metrics (neither module knows the other): the telemetry
// figures the Prometheus exporter shows, and the exporter's health figures in the MQTT health
// message.
#pragma once

#include "metrics/exporter.h"
#include "telemetry/telemetry.h"

namespace tend::runtime {

metrics::TelemetryFigures TelemetryFiguresOf(const telemetry::Telemetry::Stats& st);

// Wires both directions. The caller keeps `telemetry` stopped (destroyed) before `exporter` goes:
// the telemetry worker calls the exporter until then.
void ConnectTelemetryAndMetrics(telemetry::Telemetry& telemetry, metrics::Exporter& exporter);

}  // namespace tend::runtime
