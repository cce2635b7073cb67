#include <CLI/CLI.hpp>
int main(int argc, char** argv) {
  CLI::App app{"tenantsync: move a single-tenant PostgreSQL database into a tenant schema"};
  CLI11_PARSE(app, argc, argv);
  return 0;
}
