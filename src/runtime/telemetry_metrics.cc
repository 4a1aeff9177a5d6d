#include "runtime/telemetry_metrics.h"

namespace tend::runtime {

metrics::TelemetryFigures TelemetryFiguresOf(const telemetry::Telemetry::Stats& st) {
  metrics::TelemetryFigures f;
  f.spool_depth = st.spool_depth;
  f.spool_bytes = st.spool_bytes;
  f.spool_dropped_total = st.dropped_scores + st.dropped_alerts + st.dropped_health;
  f.mqtt_connected = st.connected;
  f.mqtt_reconnects_total = st.reconnects;
  f.mqtt_refused_total = st.refused;
  f.spool_in_memory = st.spool_in_memory;
  f.spool_disk_full = st.disk_full;
  f.spool_held_alerts = st.held_alerts;
  return f;
}

void ConnectTelemetryAndMetrics(telemetry::Telemetry& telemetry, metrics::Exporter& exporter) {
  metrics::Exporter* exp = &exporter;
  telemetry::Telemetry* t = &telemetry;
  telemetry.SetHealthProvider([exp] { return exp->HealthFigures(); });
  exporter.SetTelemetryStatsProvider([t] { return TelemetryFiguresOf(t->stats()); });
}

}  // namespace tend::runtime
