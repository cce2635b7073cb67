// Prometheus text exposition (format 0.0.4) of a StatusReport plus the live counters.
// Names follow Prometheus conventions: base units (seconds, bytes), counters end in _total.
// Label values are escaped (table names may hold quotes, backslashes, newlines, unicode).
#pragma once

#include <string>

#include "core/pipeline_stats.h"
#include "ops/status.h"

namespace tenantsync::ops {

// `live` may be nullptr (then the per-table counters are absent).
std::string RenderMetrics(const StatusReport& report, const PipelineStats* live);

// Escapes a label value: backslash, double quote and newline.
std::string EscapeLabelValue(const std::string& value);

}  // namespace tenantsync::ops
