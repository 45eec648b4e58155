// The `tandem` binary: every component's commands, registered from src/cli/*_command.cc.
#include "cli/command.h"

int main(int argc, char** argv) { return tandem::cli::RunMain(argc, argv); }
