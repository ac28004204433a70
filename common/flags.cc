#include "common/flags.h"

#include <CLI/CLI.hpp>
#include <cctype>
#include <iostream>

namespace tessera {

FlagTable::FlagTable(std::string program, std::string description)
    : program_(std::move(program)), app_(std::make_unique<CLI::App>(std::move(description), program_)) {
  app_->set_version_flag("--version", Version());
  app_->get_formatter()->column_width(36);
  // A flag given twice takes its last value, as getopt programs do: launchers append
  // overrides to a default command line.
  app_->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app_->footer("Every flag may instead come from the environment: --name from TESSERA_NAME\n"
               "(dashes as underscores; the command line wins; switches take 1 or true).");
}

FlagTable::~FlagTable() = default;

std::string FlagTable::EnvironmentName(const std::string& flag) {
  std::string name = "TESSERA_";
  for (char c : flag) name += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return name;
}

void FlagTable::Int(const std::string& name, int* field, const std::string& unit, const std::string& help, int min,
                    int max) {
  app_->add_option("--" + name, *field, help)
      ->envname(EnvironmentName(name))
      ->type_name(unit)
      ->check(CLI::Range(min, max).description(""))
      ->capture_default_str();
}

void FlagTable::String(const std::string& name, std::string* field, const std::string& unit,
                       const std::string& help) {
  CLI::Option* option = app_->add_option("--" + name, *field, help)->envname(EnvironmentName(name))->type_name(unit);
  if (!field->empty()) option->capture_default_str();
}

void FlagTable::Choice(const std::string& name, std::string* field, const std::vector<std::string>& choices,
                       const std::string& help) {
  std::string unit;
  for (const std::string& choice : choices) unit += (unit.empty() ? "" : "|") + choice;
  app_->add_option("--" + name, *field, help)
      ->envname(EnvironmentName(name))
      ->type_name(unit)
      ->check(CLI::IsMember(choices).description(""))
      ->capture_default_str();
}

void FlagTable::Bool(const std::string& name, bool* field, const std::string& help) {
  app_->add_option("--" + name, *field, help)
      ->envname(EnvironmentName(name))
      ->type_name("0|1")
      ->default_str(*field ? "1" : "0");
}

void FlagTable::Switch(const std::string& name, bool* field, const std::string& help) {
  app_->add_flag("--" + name, *field, help)->envname(EnvironmentName(name));
}

void FlagTable::HideLast() { app_->get_options().back()->group(""); }

void FlagTable::RequireLast() { app_->get_options().back()->required(); }

std::optional<int> FlagTable::Parse(int argc, const char* const* argv) {
  try {
    app_->parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << Help();
    return 0;
  } catch (const CLI::CallForVersion&) {
    std::cout << program_ << " " << Version() << "\n";
    return 0;
  } catch (const CLI::ParseError& e) {
    std::cerr << program_ << ": " << e.what() << " (see --help)\n";
    return kUsageExit;
  }
  return std::nullopt;
}

std::string FlagTable::Help() const { return app_->help(); }

const char* Version() { return TESSERA_VERSION; }

}  // namespace tessera
