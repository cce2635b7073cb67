#include "core/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace tenantsync {
namespace {

// %* : the message as a JSON string literal (quotes included).
class JsonMessageFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    std::string text(msg.payload.data(), msg.payload.size());
    std::string quoted =
        nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    dest.append(quoted.data(), quoted.data() + quoted.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessageFlag>();
  }
};

}  // namespace

Status InitLogging(std::string_view format, std::string_view level) {
  spdlog::level::level_enum lvl = spdlog::level::from_str(std::string(level));
  // from_str answers `off` for anything it does not know; accept `off` only when asked for.
  if (lvl == spdlog::level::off && level != "off") {
    return InvalidArgument("--log-level: unknown level '" + std::string(level.substr(0, 20)) +
                           "'; use trace, debug, info, warn, error, critical or off");
  }
  std::shared_ptr<spdlog::logger> logger;
  if (format == "json") {
    auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    logger = std::make_shared<spdlog::logger>("tenantsync", sink);
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<JsonMessageFlag>('*').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%f%z","level":"%l","msg":%*})");
    logger->set_formatter(std::move(formatter));
  } else if (format == "text") {
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    logger = std::make_shared<spdlog::logger>("tenantsync", sink);
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ %v");
  } else {
    return InvalidArgument("--log-format: unknown format '" + std::string(format.substr(0, 20)) +
                           "'; use text or json");
  }
  logger->set_level(lvl);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
  return Status::Ok();
}

}  // namespace tenantsync
