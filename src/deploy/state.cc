#include "deploy/state.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace tandem::deploy {

using nlohmann::json;

const RoleStatus* DeploymentStatus::FindRole(const std::string& role_name) const {
  for (const RoleStatus& role : roles) {
    if (role.name == role_name) return &role;
  }
  return nullptr;
}

const UnitStatus* DeploymentStatus::FindUnit(const std::string& unit_name) const {
  for (const UnitStatus& unit : units) {
    if (unit.name == unit_name) return &unit;
  }
  return nullptr;
}

json StatusToJson(const DeploymentStatus& status) {
  json units = json::array();
  for (const UnitStatus& unit : status.units) {
    units.push_back({{"name", unit.name},
                     {"group", unit.group},
                     {"desired", unit.desired},
                     {"ready", unit.ready},
                     {"members", unit.members},
                     {"min_available", unit.min_available}});
  }
  json roles = json::array();
  for (const RoleStatus& role : status.roles) {
    json instances = json::array();
    for (const InstanceStatus& instance : role.instances) {
      json processes = json::array();
      for (const ProcessStatus& process : instance.processes) {
        processes.push_back({{"rank", process.rank},
                             {"pid", process.pid},
                             {"address", process.address},
                             {"kv_address", process.kv_address},
                             {"log", process.log_path},
                             {"ready", process.ready},
                             {"epoch", process.epoch}});
      }
      instances.push_back({{"id", instance.id},
                           {"role", instance.role},
                           {"ordinal", instance.ordinal},
                           {"member", instance.member},
                           {"generation", instance.generation},
                           {"state", instance.state},
                           {"restarts", instance.restarts},
                           {"last_exit", instance.last_exit},
                           {"processes", std::move(processes)}});
    }
    roles.push_back({{"name", role.name},
                     {"kind", role.kind},
                     {"unit", role.unit},
                     {"desired", role.desired},
                     {"ready", role.ready},
                     {"min_available", role.min_available},
                     {"instances", std::move(instances)}});
  }
  return {{"name", status.name},
          {"phase", status.phase},
          {"message", status.message},
          {"spec_path", status.spec_path},
          {"generation", status.generation},
          {"good_generation", status.good_generation},
          {"units", std::move(units)},
          {"roles", std::move(roles)},
          {"update",
           {{"generation", status.update.generation},
            {"state", status.update.state},
            {"message", status.update.message},
            {"changes", status.update.changes}}}};
}

absl::StatusOr<DeploymentStatus> StatusFromJson(const json& value) {
  try {
    DeploymentStatus status;
    status.name = value.at("name").get<std::string>();
    status.phase = value.at("phase").get<std::string>();
    status.message = value.value("message", "");
    status.spec_path = value.value("spec_path", "");
    status.generation = value.value("generation", 0);
    status.good_generation = value.value("good_generation", 0);
    for (const json& unit_json : value.at("units")) {
      UnitStatus unit;
      unit.name = unit_json.at("name").get<std::string>();
      unit.group = unit_json.value("group", false);
      unit.desired = unit_json.value("desired", 0);
      unit.ready = unit_json.value("ready", 0);
      unit.members = unit_json.value("members", 0);
      unit.min_available = unit_json.value("min_available", 0);
      status.units.push_back(std::move(unit));
    }
    for (const json& role_json : value.at("roles")) {
      RoleStatus role;
      role.name = role_json.at("name").get<std::string>();
      role.kind = role_json.value("kind", "");
      role.unit = role_json.value("unit", "");
      role.desired = role_json.value("desired", 0);
      role.ready = role_json.value("ready", 0);
      role.min_available = role_json.value("min_available", 0);
      for (const json& instance_json : role_json.at("instances")) {
        InstanceStatus instance;
        instance.id = instance_json.at("id").get<std::string>();
        instance.role = instance_json.value("role", "");
        instance.ordinal = instance_json.value("ordinal", 0);
        instance.member = instance_json.value("member", int64_t{0});
        instance.generation = instance_json.value("generation", 0);
        instance.state = instance_json.value("state", "");
        instance.restarts = instance_json.value("restarts", 0);
        instance.last_exit = instance_json.value("last_exit", "");
        for (const json& process_json : instance_json.at("processes")) {
          ProcessStatus process;
          process.rank = process_json.value("rank", 0);
          process.pid = process_json.value("pid", 0);
          process.address = process_json.value("address", "");
          process.kv_address = process_json.value("kv_address", "");
          process.log_path = process_json.value("log", "");
          process.ready = process_json.value("ready", false);
          process.epoch = process_json.value("epoch", "");
          instance.processes.push_back(std::move(process));
        }
        role.instances.push_back(std::move(instance));
      }
      status.roles.push_back(std::move(role));
    }
    if (value.contains("update")) {
      const json& update = value.at("update");
      status.update.generation = update.value("generation", 0);
      status.update.state = update.value("state", "");
      status.update.message = update.value("message", "");
      status.update.changes = update.value("changes", std::vector<std::string>{});
    }
    return status;
  } catch (const json::exception& error) {
    return absl::DataLossError(absl::StrCat("deployment status: unexpected JSON: ", error.what()));
  }
}

std::string FormatStatus(const DeploymentStatus& status) {
  std::string out = absl::StrFormat("deployment %s: %s (generation %d", status.name, status.phase,
                                    status.generation);
  if (!status.spec_path.empty()) absl::StrAppend(&out, ", spec ", status.spec_path);
  absl::StrAppend(&out, ")\n");
  if (!status.message.empty()) absl::StrAppend(&out, "  ", status.message, "\n");
  if (!status.update.state.empty() && status.update.state != "none") {
    absl::StrAppend(&out, "  update to generation ", status.update.generation, ": ",
                    status.update.state);
    if (!status.update.message.empty()) absl::StrAppend(&out, " - ", status.update.message);
    absl::StrAppend(&out, "\n");
  }
  absl::StrAppend(&out, absl::StrFormat("\n%-14s %-8s %-10s %7s %9s %4s\n", "ROLE", "KIND", "UNIT",
                                        "READY", "DESIRED", "MIN"));
  for (const RoleStatus& role : status.roles) {
    absl::StrAppend(&out, absl::StrFormat("%-14s %-8s %-10s %7d %9d %4d\n", role.name, role.kind,
                                          role.unit, role.ready, role.desired, role.min_available));
  }
  absl::StrAppend(&out, absl::StrFormat("\n%-16s %-10s %-22s %-26s %4s %8s %s\n", "INSTANCE",
                                        "STATE", "ADDRESS", "EPOCH", "GEN", "RESTARTS", "PID"));
  for (const RoleStatus& role : status.roles) {
    for (const InstanceStatus& instance : role.instances) {
      for (const ProcessStatus& process : instance.processes) {
        std::string id = instance.processes.size() > 1
                             ? absl::StrCat(instance.id, ".", process.rank)
                             : instance.id;
        absl::StrAppend(
            &out, absl::StrFormat("%-16s %-10s %-22s %-26s %4d %8d %s\n", id, instance.state,
                                  process.address, process.epoch.empty() ? "-" : process.epoch,
                                  instance.generation, instance.restarts,
                                  process.pid > 0 ? absl::StrCat(process.pid) : "-"));
      }
    }
  }
  return out;
}

std::string StateFilePath(const std::string& deployment_dir) {
  return absl::StrCat(deployment_dir, "/state.json");
}

absl::Status WriteStateFile(const StateFile& state) {
  json value = {{"name", state.name},
                {"spec_path", state.spec_path},
                {"run_dir", state.run_dir},
                {"supervisor_pid", state.supervisor_pid},
                {"control_url", state.control_url},
                {"token", state.token},
                {"started_at", state.started_at},
                {"process_groups", state.process_groups}};
  const std::string path = StateFilePath(state.run_dir);
  const std::string temporary = absl::StrCat(path, ".tmp.", ::getpid());
  int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("write ", temporary, ": ", std::strerror(errno)));
  }
  std::string text = value.dump(2) + "\n";
  ssize_t written = ::write(fd, text.data(), text.size());
  ::close(fd);
  if (written != static_cast<ssize_t>(text.size()) ||
      ::rename(temporary.c_str(), path.c_str()) != 0) {
    ::unlink(temporary.c_str());
    return absl::InternalError(absl::StrCat("write ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<StateFile> ReadStateFile(const std::string& path) {
  std::ifstream file(path);
  if (!file) return absl::NotFoundError(absl::StrCat(path, ": no such state file"));
  std::stringstream text;
  text << file.rdbuf();
  try {
    json value = json::parse(text.str());
    StateFile state;
    state.name = value.at("name").get<std::string>();
    state.spec_path = value.value("spec_path", "");
    state.run_dir = value.at("run_dir").get<std::string>();
    state.supervisor_pid = value.value("supervisor_pid", 0);
    state.control_url = value.at("control_url").get<std::string>();
    state.token = value.at("token").get<std::string>();
    state.started_at = value.value("started_at", "");
    state.process_groups = value.value("process_groups", std::vector<pid_t>{});
    return state;
  } catch (const json::exception& error) {
    return absl::DataLossError(absl::StrCat(path, ": not a deployment state file (", error.what(),
                                            "); remove it if no deployment is running"));
  }
}

absl::StatusOr<StateFile> FindDeployment(const std::string& run_root, const std::string& name) {
  if (!name.empty()) {
    std::string path = StateFilePath(absl::StrCat(run_root, "/", name));
    if (::access(path.c_str(), F_OK) != 0) {
      return absl::NotFoundError(absl::StrCat("no deployment '", name, "' is running here (no ",
                                              path, "); start one with `tandem up SPEC`"));
    }
    return ReadStateFile(path);
  }
  std::vector<std::string> found;
  if (DIR* dir = ::opendir(run_root.c_str())) {
    while (dirent* entry = ::readdir(dir)) {
      std::string entry_name = entry->d_name;
      if (entry_name == "." || entry_name == "..") continue;
      if (::access(StateFilePath(absl::StrCat(run_root, "/", entry_name)).c_str(), F_OK) == 0) {
        found.push_back(entry_name);
      }
    }
    ::closedir(dir);
  }
  std::sort(found.begin(), found.end());
  if (found.empty()) {
    return absl::NotFoundError(absl::StrCat("no deployment is running under '", run_root,
                                            "/' (no */state.json); start one with `tandem up "
                                            "SPEC`, or pass --run-dir"));
  }
  if (found.size() > 1) {
    return absl::InvalidArgumentError(absl::StrCat("several deployments run under '", run_root,
                                                   "/': ", absl::StrJoin(found, ", "),
                                                   "; choose one with --name"));
  }
  return ReadStateFile(StateFilePath(absl::StrCat(run_root, "/", found[0])));
}

}  // namespace tandem::deploy
