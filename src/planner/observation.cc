#include "planner/observation.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "core/status.h"
#include "nlohmann/json.hpp"

namespace tandem::planner {
namespace {

using Json = nlohmann::json;

// Reads the number at `key` into `out` if present; `where` prefixes messages.
absl::Status ReadNumber(const Json& object, const char* key, const std::string& where,
                        std::set<std::string>* known, double* out) {
  known->insert(key);
  auto it = object.find(key);
  if (it == object.end()) return absl::OkStatus();
  if (!it->is_number()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".", key, " must be a number, got ", it->type_name()));
  }
  *out = it->get<double>();
  return absl::OkStatus();
}

absl::Status ReadCount(const Json& object, const char* key, const std::string& where,
                       std::set<std::string>* known, int* out) {
  known->insert(key);
  auto it = object.find(key);
  if (it == object.end()) return absl::OkStatus();
  if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > 1'000'000) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".", key, " must be a whole number in [0, 1000000], got ", it->dump()));
  }
  *out = static_cast<int>(it->get<int64_t>());
  return absl::OkStatus();
}

absl::Status NoUnknownKeys(const Json& object, const std::string& where,
                           const std::set<std::string>& known) {
  for (const auto& [key, value] : object.items()) {
    if (known.count(key) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": unknown key '", key, "' (known: ", absl::StrJoin(known, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<InstanceLoad>> ReadLoads(const Json& object, const char* key,
                                                    const std::string& where,
                                                    std::set<std::string>* known) {
  known->insert(key);
  std::vector<InstanceLoad> loads;
  auto it = object.find(key);
  if (it == object.end()) return loads;
  std::string field = absl::StrCat(where, ".", key);
  if (!it->is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be a list of {active, latency_s}"));
  }
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& entry = (*it)[i];
    std::string at = absl::StrCat(field, "[", i, "]");
    if (!entry.is_object())
      return absl::InvalidArgumentError(absl::StrCat(at, " must be an object"));
    std::set<std::string> entry_known;
    InstanceLoad load;
    TANDEM_RETURN_IF_ERROR(ReadNumber(entry, "active", at, &entry_known, &load.active));
    TANDEM_RETURN_IF_ERROR(ReadNumber(entry, "latency_s", at, &entry_known, &load.latency_seconds));
    TANDEM_RETURN_IF_ERROR(NoUnknownKeys(entry, at, entry_known));
    loads.push_back(load);
  }
  return loads;
}

absl::StatusOr<Observation> ReadObservation(const Json& object, const std::string& where) {
  if (!object.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, " must be an object"));
  }
  std::set<std::string> known;
  Observation o;
  if (!object.contains("time_s")) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": missing 'time_s' (seconds)"));
  }
  TANDEM_RETURN_IF_ERROR(ReadNumber(object, "time_s", where, &known, &o.time_seconds));
  TANDEM_RETURN_IF_ERROR(
      ReadCount(object, "prefill_instances", where, &known, &o.prefill_instances));
  TANDEM_RETURN_IF_ERROR(ReadCount(object, "decode_instances", where, &known, &o.decode_instances));
  TANDEM_RETURN_IF_ERROR(
      ReadNumber(object, "prompt_tokens_per_s", where, &known, &o.prompt_tokens_per_second));
  TANDEM_RETURN_IF_ERROR(ReadNumber(object, "prefix_hit_rate", where, &known, &o.prefix_hit_rate));
  TANDEM_RETURN_IF_ERROR(
      ReadNumber(object, "mean_prompt_tokens", where, &known, &o.mean_prompt_tokens));
  TANDEM_RETURN_IF_ERROR(
      ReadNumber(object, "output_tokens_per_s", where, &known, &o.output_tokens_per_second));
  TANDEM_RETURN_IF_ERROR(
      ReadNumber(object, "mean_context_tokens", where, &known, &o.mean_context_tokens));
  TANDEM_RETURN_IF_ERROR(
      ReadNumber(object, "active_sequences", where, &known, &o.active_sequences));
  TANDEM_RETURN_IF_ERROR(ReadNumber(object, "ttft_s", where, &known, &o.ttft_seconds));
  TANDEM_RETURN_IF_ERROR(ReadNumber(object, "itl_s", where, &known, &o.itl_seconds));
  TANDEM_ASSIGN_OR_RETURN(o.prefill_load, ReadLoads(object, "prefill_load", where, &known));
  TANDEM_ASSIGN_OR_RETURN(o.decode_load, ReadLoads(object, "decode_load", where, &known));
  TANDEM_RETURN_IF_ERROR(NoUnknownKeys(object, where, known));
  absl::Status valid = ValidateObservation(o);
  if (!valid.ok()) return Annotate(valid, where);
  return o;
}

}  // namespace

absl::StatusOr<std::vector<Observation>> ParseObservations(std::string_view json,
                                                           std::string_view source_text) {
  const std::string source(source_text);
  Json root;
  try {
    root = Json::parse(json);
  } catch (const Json::exception& e) {  // parse_error, or out_of_range for a huge number
    return absl::InvalidArgumentError(
        absl::StrCat("metrics snapshot '", source, "': not valid JSON: ", e.what()));
  }
  std::vector<Observation> observations;
  try {
    if (root.is_array()) {
      if (root.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("metrics snapshot '", source, "': the list of observations is empty"));
      }
      for (size_t i = 0; i < root.size(); ++i) {
        TANDEM_ASSIGN_OR_RETURN(Observation o,
                                ReadObservation(root[i], absl::StrCat(source, "[", i, "]")));
        if (!observations.empty() && o.time_seconds < observations.back().time_seconds) {
          return absl::InvalidArgumentError(absl::StrCat(
              source, "[", i, "]: time_s ", o.time_seconds, " goes back from ",
              observations.back().time_seconds, " (observations must be oldest first)"));
        }
        observations.push_back(std::move(o));
      }
    } else {
      TANDEM_ASSIGN_OR_RETURN(Observation o, ReadObservation(root, source));
      observations.push_back(std::move(o));
    }
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("metrics snapshot '", source, "': ", e.what()));
  }
  return observations;
}

std::string ObservationToJson(const Observation& o) {
  auto loads = [](const std::vector<InstanceLoad>& list) {
    Json array = Json::array();
    for (const InstanceLoad& load : list) {
      array.push_back({{"active", load.active}, {"latency_s", load.latency_seconds}});
    }
    return array;
  };
  Json json{{"time_s", o.time_seconds},
            {"prefill_instances", o.prefill_instances},
            {"decode_instances", o.decode_instances},
            {"prompt_tokens_per_s", o.prompt_tokens_per_second},
            {"prefix_hit_rate", o.prefix_hit_rate},
            {"mean_prompt_tokens", o.mean_prompt_tokens},
            {"output_tokens_per_s", o.output_tokens_per_second},
            {"mean_context_tokens", o.mean_context_tokens},
            {"active_sequences", o.active_sequences},
            {"ttft_s", o.ttft_seconds},
            {"itl_s", o.itl_seconds}};
  if (!o.prefill_load.empty()) json["prefill_load"] = loads(o.prefill_load);
  if (!o.decode_load.empty()) json["decode_load"] = loads(o.decode_load);
  return json.dump(2) + "\n";
}

}  // namespace tandem::planner
