#include "core/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>

#include "core/crypto.h"

namespace tenantsync {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

std::string TestKey() {
  std::string k(32, '\0');
  for (int i = 0; i < 32; ++i) k[i] = static_cast<char>(i * 7);
  return Base64Encode(k);
}

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("TS_TEST_SOURCE", "postgresql://app:s3cret@old/rawdog", 1);
    setenv("TS_TEST_TARGET", "postgresql://app:t0psecret@new/platform", 1);
    setenv("TS_TEST_KEY", TestKey().c_str(), 1);
    unsetenv("TS_TEST_UNSET");
  }

  // A minimal valid config followed by `extra` top-level YAML.
  static std::string Minimal(const std::string& extra = "") {
    return "pipeline: rawdog\n"
           "source: {url: \"${TS_TEST_SOURCE}\"}\n"
           "target: {url: \"${TS_TEST_TARGET}\"}\n"
           "tenant: {slug: rawdog}\n" +
           extra;
  }

  // A valid config with one column rule on orders.
  static std::string WithColumn(const std::string& column, const std::string& rule) {
    return Minimal(
        "encryption: {key: \"${TS_TEST_KEY}\"}\n"
        "tables:\n  orders:\n    columns:\n      " +
        column + ": " + rule + "\n");
  }

  // Parses text expected to fail; checks the status is one kInvalidArgument line starting with
  // the origin.
  static Status Fails(const std::string& text) {
    StatusOr<Config> c = ParseConfig(text, "test.yaml");
    EXPECT_FALSE(c.ok());
    if (c.ok()) return Status::Ok();
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(c.status().message(), StartsWith("test.yaml: "));
    EXPECT_THAT(c.status().message(), Not(HasSubstr("\n")));
    return c.status();
  }
};

constexpr char kIssueExample[] = R"(
pipeline: rawdog
source: {url: "${POSTGRES_URL}", schema: public, plugin: pgoutput, publication: tenantsync_rawdog, slot: tenantsync_rawdog}
target: {url: "${NEW_POSTGRES_URL}", schema: tenant_rawdog, create_tables: true}
tenant: {slug: rawdog, name: RAWDOG Skincare, domain: www.justrawdogit.com,
         secrets: {shopify_access_token: "${SHOPIFY_ACCESS_TOKEN}"}}
state_dir: ./state/rawdog
encryption: {key: "${TENANTSYNC_KEY}"}        # base64 of 32 bytes, AES-256-GCM
ops: {listen: "127.0.0.1:9753"}
tables:
  orders:   {columns: {gross_sales_cents: {type: bigint, on_error: 0}, migrated_at: {type: timestamptz, value: now}}}
  creators: {columns: {commission_percent: {type: double precision, on_error: 10}, payout_email: {encrypt: true}}}
  customers: {columns: {phone: {rename: phone_number}}}    # a table takes `rename: NEW_NAME` too
  legacy_notes: {skip: true}
)";

TEST_F(ConfigTest, ParsesTheIssueExample) {
  setenv("POSTGRES_URL", "postgresql://u:pw@old/db", 1);
  setenv("NEW_POSTGRES_URL", "postgresql://u:pw@new/db", 1);
  setenv("SHOPIFY_ACCESS_TOKEN", "shpat_123", 1);
  setenv("TENANTSYNC_KEY", TestKey().c_str(), 1);
  StatusOr<Config> c = ParseConfig(kIssueExample, "rawdog.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->pipeline, "rawdog");
  EXPECT_EQ(c->source.url, "postgresql://u:pw@old/db");
  EXPECT_EQ(c->source.plugin, "pgoutput");
  EXPECT_EQ(c->target.url, "postgresql://u:pw@new/db");
  EXPECT_EQ(c->target.schema, "tenant_rawdog");
  EXPECT_TRUE(c->target.create_tables);
  EXPECT_EQ(c->tenant.name, "RAWDOG Skincare");
  EXPECT_EQ(c->tenant.domain, "www.justrawdogit.com");
  EXPECT_EQ(c->tenant.secrets.at("shopify_access_token"), "shpat_123");
  EXPECT_EQ(c->encryption.key, TestKey());
  ASSERT_EQ(c->tables.size(), 4u);
  const ColumnRule& gross = c->tables.at("orders").columns.at("gross_sales_cents");
  EXPECT_EQ(gross.type, "bigint");
  EXPECT_EQ(gross.on_error, "0");
  const ColumnRule& migrated = c->tables.at("orders").columns.at("migrated_at");
  EXPECT_EQ(migrated.type, "timestamp with time zone");
  EXPECT_EQ(migrated.value, "now");
  const ColumnRule& pct = c->tables.at("creators").columns.at("commission_percent");
  EXPECT_EQ(pct.type, "double precision");
  EXPECT_EQ(pct.on_error, "10");
  EXPECT_TRUE(c->tables.at("creators").columns.at("payout_email").encrypt);
  EXPECT_EQ(c->tables.at("customers").columns.at("phone").rename, "phone_number");
  EXPECT_TRUE(c->tables.at("legacy_notes").skip);
  EXPECT_EQ(c->path, "rawdog.yaml");
}

TEST_F(ConfigTest, LoadsTheExampleFile) {
  setenv("POSTGRES_URL", "postgresql://u:pw@old/db", 1);
  setenv("NEW_POSTGRES_URL", "postgresql://u:pw@new/db", 1);
  setenv("SHOPIFY_ACCESS_TOKEN", "shpat_123", 1);
  setenv("TENANTSYNC_KEY", TestKey().c_str(), 1);
  std::string here = __FILE__;
  std::string path = here.substr(0, here.rfind("/core/")) + "/examples/rawdog.yaml";
  StatusOr<Config> c = LoadConfig(path);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->path, path);
  EXPECT_EQ(c->tables.at("orders").sum_columns, std::vector<std::string>{"total_cents"});
  EXPECT_TRUE(c->tables.at("withdrawal_requests").columns.at("bank_account").encrypt);
  EXPECT_TRUE(c->tables.at("creators").columns.at("access_token").encrypt);
  EXPECT_TRUE(c->NeedsEncryptionKey());
}

TEST_F(ConfigTest, FillsDefaults) {
  StatusOr<Config> c = ParseConfig(Minimal(), "test.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->source.url, "postgresql://app:s3cret@old/rawdog");
  EXPECT_EQ(c->source.schema, "public");
  EXPECT_EQ(c->source.plugin, "pgoutput");
  EXPECT_EQ(c->source.publication, "tenantsync_rawdog");
  EXPECT_EQ(c->source.slot, "tenantsync_rawdog");
  EXPECT_EQ(c->target.schema, "tenant_rawdog");
  EXPECT_TRUE(c->target.create_tables);
  EXPECT_EQ(c->tenant.name, "rawdog");
  EXPECT_EQ(c->state_dir, "./state/rawdog");
  EXPECT_EQ(c->ops.listen, "127.0.0.1:9753");
  EXPECT_EQ(c->snapshot.workers, 0);
  EXPECT_EQ(c->snapshot.on_error, ErrorPolicy::kDeadLetter);
  EXPECT_EQ(c->snapshot.chunk_bytes, 4096ll << 20);
  EXPECT_EQ(c->apply.truncate, TruncatePolicy::kApply);
  EXPECT_EQ(c->apply.schema_drift, DriftPolicy::kAdd);
  EXPECT_EQ(c->apply.session_replication_role, "replica");
  EXPECT_EQ(c->apply.toast_compression, "lz4");
  EXPECT_EQ(c->journal.max_bytes, 20ll << 30);
  EXPECT_TRUE(c->tables.empty());
  EXPECT_FALSE(c->NeedsEncryptionKey());
}

TEST_F(ConfigTest, ParsesEveryPolicyAndNumber) {
  StatusOr<Config> c = ParseConfig(
      Minimal("snapshot: {workers: 4, on_error: abort, chunk_mb: 64}\n"
              "apply: {batch_max_transactions: 10, batch_max_bytes: 1048576, batch_max_ms: 50,\n"
              "        truncate: stop, schema_drift: stop, on_error: abort,\n"
              "        session_replication_role: origin, toast_compression: server}\n"
              "journal: {retention_hours: 1.5, max_gb: 0.5}\n"
              "ops: {listen: \"0.0.0.0:0\", token: abc, max_healthy_lag_seconds: 30}\n"),
      "test.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->snapshot.workers, 4);
  EXPECT_EQ(c->snapshot.on_error, ErrorPolicy::kAbort);
  EXPECT_EQ(c->snapshot.chunk_bytes, 64ll << 20);
  EXPECT_EQ(c->apply.batch_max_transactions, 10);
  EXPECT_EQ(c->apply.batch_max_bytes, 1048576);
  EXPECT_EQ(c->apply.batch_max_ms, 50);
  EXPECT_EQ(c->apply.truncate, TruncatePolicy::kStop);
  EXPECT_EQ(c->apply.schema_drift, DriftPolicy::kStop);
  EXPECT_EQ(c->apply.on_error, ErrorPolicy::kAbort);
  EXPECT_EQ(c->apply.session_replication_role, "origin");
  EXPECT_EQ(c->apply.toast_compression, "server");
  EXPECT_DOUBLE_EQ(c->journal.retention_hours, 1.5);
  EXPECT_EQ(c->journal.max_bytes, 512ll << 20);
  EXPECT_EQ(c->ops.listen, "0.0.0.0:0");
  EXPECT_EQ(c->ops.token, "abc");
  EXPECT_DOUBLE_EQ(c->ops.max_healthy_lag_seconds, 30);
}

TEST_F(ConfigTest, TruncateIgnoreParses) {
  StatusOr<Config> c = ParseConfig(Minimal("apply: {truncate: ignore}\n"), "test.yaml");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->apply.truncate, TruncatePolicy::kIgnore);
}

TEST_F(ConfigTest, TableHelpers) {
  StatusOr<Config> c = ParseConfig(
      Minimal("tables: {orders: {rename: purchases}, notes: {skip: true}}\n"), "test.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->TargetTable("orders"), "purchases");
  EXPECT_EQ(c->TargetTable("customers"), "customers");
  EXPECT_EQ(c->FindTable("customers"), nullptr);
  ASSERT_NE(c->FindTable("notes"), nullptr);
  EXPECT_TRUE(c->FindTable("notes")->skip);
}

TEST_F(ConfigTest, EscapedDollarBraceIsLiteral) {
  StatusOr<Config> c = ParseConfig(Minimal("ops: {token: \"a$${NOT_A_VAR}b$c\"}\n"), "test.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->ops.token, "a${NOT_A_VAR}b$c");
}

TEST_F(ConfigTest, VariableDefaultIsUsedWhenUnset) {
  StatusOr<Config> c =
      ParseConfig(Minimal("snapshot: {workers: \"${TS_TEST_UNSET:-3}\"}\n"), "test.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->snapshot.workers, 3);
}

TEST_F(ConfigTest, UnsetVariableNamesVariableAndKey) {
  Status s = Fails(
      "pipeline: rawdog\nsource: {url: \"${TS_TEST_UNSET}\"}\n"
      "target: {url: x}\ntenant: {slug: rawdog}\n");
  EXPECT_THAT(s.message(), AllOf(HasSubstr("source.url"), HasSubstr("TS_TEST_UNSET"),
                                 HasSubstr("is not set"), HasSubstr("export")));
}

TEST_F(ConfigTest, UnsetVariableInSecretNamesTheSecret) {
  Status s = Fails(
      "pipeline: rawdog\nsource: {url: x}\ntarget: {url: x}\n"
      "tenant: {slug: rawdog, secrets: {api: \"${TS_TEST_UNSET}\"}}\n");
  EXPECT_THAT(s.message(), HasSubstr("tenant.secrets.api: environment variable TS_TEST_UNSET"));
}

TEST_F(ConfigTest, UnterminatedVariableIsAnError) {
  Status s = Fails(Minimal("ops: {token: \"${OOPS\"}\n"));
  EXPECT_THAT(s.message(), AllOf(HasSubstr("ops.token"), HasSubstr("closing '}'")));
}

TEST_F(ConfigTest, BadVariableNameIsAnError) {
  Status s = Fails(Minimal("ops: {token: \"${1BAD}\"}\n"));
  EXPECT_THAT(s.message(), AllOf(HasSubstr("ops.token"), HasSubstr("not a variable name")));
}

TEST_F(ConfigTest, UnknownTopLevelKeyListsAllowedKeys) {
  Status s = Fails(Minimal("pipline: x\n"));
  EXPECT_THAT(s.message(), AllOf(HasSubstr("unknown key 'pipline'"), HasSubstr("pipeline"),
                                 HasSubstr("tables")));
}

TEST_F(ConfigTest, UnknownSourceKey) {
  Status s = Fails(
      "pipeline: rawdog\nsource: {url: x, slto: y}\ntarget: {url: x}\n"
      "tenant: {slug: rawdog}\n");
  EXPECT_THAT(s.message(), AllOf(HasSubstr("test.yaml: source: unknown key 'slto'"),
                                 HasSubstr("url, schema, plugin, publication, slot")));
}

TEST_F(ConfigTest, UnknownColumnRuleKey) {
  Status s = Fails(WithColumn("total", "{typo: bigint}"));
  EXPECT_THAT(s.message(), AllOf(HasSubstr("tables.orders.columns.total: unknown key 'typo'"),
                                 HasSubstr("type, on_error, value, rename, drop, encrypt")));
}

TEST_F(ConfigTest, UnknownTableKey) {
  Status s = Fails(Minimal("tables: {orders: {renam: x}}\n"));
  EXPECT_THAT(s.message(), AllOf(HasSubstr("tables.orders: unknown key 'renam'"),
                                 HasSubstr("rename, skip, sum_columns, columns")));
}

TEST_F(ConfigTest, UnknownKeyInEverySection) {
  for (std::string section : {"encryption", "ops", "snapshot", "apply", "journal"}) {
    Status s = Fails(Minimal(section + ": {bogus: 1}\n"));
    EXPECT_THAT(s.message(), HasSubstr(section + ": unknown key 'bogus'")) << section;
  }
  Status s = Fails(
      "pipeline: rawdog\nsource: {url: x}\ntarget: {url: x, bogus: 1}\n"
      "tenant: {slug: rawdog}\n");
  EXPECT_THAT(s.message(), HasSubstr("target: unknown key 'bogus'"));
  s = Fails(
      "pipeline: rawdog\nsource: {url: x}\ntarget: {url: x}\n"
      "tenant: {slug: rawdog, bogus: 1}\n");
  EXPECT_THAT(s.message(), HasSubstr("tenant: unknown key 'bogus'"));
}

TEST_F(ConfigTest, WrongBooleanType) {
  Status s = Fails(
      "pipeline: rawdog\nsource: {url: x}\ntarget: {url: x, create_tables: maybe}\n"
      "tenant: {slug: rawdog}\n");
  EXPECT_THAT(s.message(), AllOf(HasSubstr("target.create_tables: expected true or false"),
                                 HasSubstr("'maybe'")));
}

TEST_F(ConfigTest, WrongIntegerType) {
  Status s = Fails(Minimal("snapshot: {workers: many}\n"));
  EXPECT_THAT(s.message(),
              AllOf(HasSubstr("snapshot.workers: expected a whole number"), HasSubstr("'many'")));
}

TEST_F(ConfigTest, IntegerOutOfRange) {
  Status s = Fails(Minimal("snapshot: {workers: -1}\n"));
  EXPECT_THAT(s.message(), HasSubstr("snapshot.workers: must be between 0 and 256"));
}

TEST_F(ConfigTest, WrongNumberType) {
  Status s = Fails(Minimal("journal: {retention_hours: forever}\n"));
  EXPECT_THAT(s.message(), HasSubstr("journal.retention_hours: expected a number"));
}

TEST_F(ConfigTest, MappingWhereScalarExpected) {
  Status s = Fails(Minimal("state_dir: {a: b}\n"));
  EXPECT_THAT(s.message(), HasSubstr("state_dir: expected a single value"));
}

TEST_F(ConfigTest, ScalarWhereMappingExpected) {
  Status s = Fails(Minimal("ops: loud\n"));
  EXPECT_THAT(s.message(), HasSubstr("ops: expected a mapping of keys (listen, token"));
}

TEST_F(ConfigTest, NullValueIsAnError) {
  Status s = Fails(Minimal("state_dir:\n"));
  EXPECT_THAT(s.message(), HasSubstr("state_dir: has no value"));
}

TEST_F(ConfigTest, MissingPipeline) {
  Status s = Fails("source: {url: x}\ntarget: {url: x}\ntenant: {slug: rawdog}\n");
  EXPECT_THAT(s.message(), HasSubstr("pipeline: is required"));
}

TEST_F(ConfigTest, PipelineWithBadCharacters) {
  Status s =
      Fails("pipeline: Raw-Dog\nsource: {url: x}\ntarget: {url: x}\ntenant: {slug: rawdog}\n");
  EXPECT_THAT(s.message(), HasSubstr("pipeline: must match [a-z0-9_]+"));
}

TEST_F(ConfigTest, MissingSourceUrl) {
  Status s = Fails("pipeline: rawdog\ntarget: {url: x}\ntenant: {slug: rawdog}\n");
  EXPECT_THAT(s.message(), HasSubstr("source.url: is required"));
}

TEST_F(ConfigTest, MissingTargetUrl) {
  Status s = Fails("pipeline: rawdog\nsource: {url: x}\ntenant: {slug: rawdog}\n");
  EXPECT_THAT(s.message(), HasSubstr("target.url: is required"));
}

TEST_F(ConfigTest, MissingSlug) {
  Status s = Fails("pipeline: rawdog\nsource: {url: x}\ntarget: {url: x}\n");
  EXPECT_THAT(s.message(), HasSubstr("tenant.slug: is required"));
}

TEST_F(ConfigTest, SlugWithBadCharacters) {
  Status s =
      Fails("pipeline: rawdog\nsource: {url: x}\ntarget: {url: x}\ntenant: {slug: RAW DOG}\n");
  EXPECT_THAT(s.message(), HasSubstr("tenant.slug: must match [a-z0-9_]+"));
}

TEST_F(ConfigTest, SlotNameTooLong) {
  Status s = Fails("pipeline: " + std::string(60, 'p') +
                   "\nsource: {url: x}\ntarget: {url: x}\ntenant: {slug: rawdog}\n");
  EXPECT_THAT(s.message(), HasSubstr("source.slot"));
}

TEST_F(ConfigTest, UnknownPlugin) {
  Status s = Fails(
      "pipeline: rawdog\nsource: {url: x, plugin: test_decoding}\ntarget: {url: x}\n"
      "tenant: {slug: rawdog}\n");
  EXPECT_THAT(s.message(), AllOf(HasSubstr("source.plugin: expected one of pgoutput, wal2json"),
                                 HasSubstr("'test_decoding'")));
}

TEST_F(ConfigTest, Wal2jsonPluginParses) {
  StatusOr<Config> c = ParseConfig(
      "pipeline: rawdog\nsource: {url: x, plugin: wal2json}\n"
      "target: {url: x}\ntenant: {slug: rawdog}\n",
      "test.yaml");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->source.plugin, "wal2json");
}

TEST_F(ConfigTest, BadSnapshotOnErrorPolicy) {
  Status s = Fails(Minimal("snapshot: {on_error: skip}\n"));
  EXPECT_THAT(s.message(), HasSubstr("snapshot.on_error: expected one of dead_letter, abort"));
}

TEST_F(ConfigTest, BadTruncatePolicy) {
  Status s = Fails(Minimal("apply: {truncate: maybe}\n"));
  EXPECT_THAT(s.message(), HasSubstr("apply.truncate: expected one of apply, ignore, stop"));
}

TEST_F(ConfigTest, BadDriftPolicy) {
  Status s = Fails(Minimal("apply: {schema_drift: ignore}\n"));
  EXPECT_THAT(s.message(), HasSubstr("apply.schema_drift: expected one of add, stop"));
}

TEST_F(ConfigTest, BadSessionReplicationRole) {
  Status s = Fails(Minimal("apply: {session_replication_role: local}\n"));
  EXPECT_THAT(s.message(), HasSubstr("apply.session_replication_role: expected one of replica"));
}

TEST_F(ConfigTest, BadToastCompression) {
  Status s = Fails(Minimal("apply: {toast_compression: zstd}\n"));
  EXPECT_THAT(s.message(), HasSubstr("apply.toast_compression: expected one of lz4, server"));
}

TEST_F(ConfigTest, BadListenAddress) {
  Status s = Fails(Minimal("ops: {listen: localhost}\n"));
  EXPECT_THAT(s.message(), HasSubstr("ops.listen: expected HOST:PORT"));
}

TEST_F(ConfigTest, ValueCombinedWithRename) {
  Status s = Fails(WithColumn("migrated_at", "{value: now, rename: x}"));
  EXPECT_THAT(s.message(), AllOf(HasSubstr("tables.orders.columns.migrated_at"),
                                 HasSubstr("can not be combined with rename")));
}

TEST_F(ConfigTest, ValueCombinedWithEncryptAndOnError) {
  Status s = Fails(WithColumn("flag", "{type: bigint, value: 1, encrypt: true, on_error: 0}"));
  EXPECT_THAT(s.message(), HasSubstr("can not be combined with encrypt, on_error"));
}

TEST_F(ConfigTest, DropCombinedWithType) {
  Status s = Fails(WithColumn("notes", "{drop: true, type: text}"));
  EXPECT_THAT(s.message(),
              HasSubstr("drop leaves the column out and can not be combined with type"));
}

TEST_F(ConfigTest, EncryptCombinedWithType) {
  Status s = Fails(WithColumn("email", "{encrypt: true, type: bigint}"));
  EXPECT_THAT(s.message(), HasSubstr("an encrypted column is stored as text"));
}

TEST_F(ConfigTest, OnErrorWithoutType) {
  Status s = Fails(WithColumn("total", "{on_error: 0}"));
  EXPECT_THAT(s.message(), HasSubstr("tables.orders.columns.total.on_error: applies to a cast"));
}

TEST_F(ConfigTest, UnknownCastType) {
  Status s = Fails(WithColumn("total", "{type: money}"));
  EXPECT_THAT(s.message(),
              AllOf(HasSubstr("tables.orders.columns.total.type: unknown type 'money'"),
                    HasSubstr("bigint")));
}

TEST_F(ConfigTest, OnErrorNotValidForType) {
  Status s = Fails(WithColumn("total", "{type: bigint, on_error: zero}"));
  EXPECT_THAT(s.message(),
              AllOf(HasSubstr("tables.orders.columns.total.on_error: is not a valid bigint"),
                    HasSubstr("not an integer")));
}

TEST_F(ConfigTest, OnErrorIsNormalised) {
  StatusOr<Config> c = ParseConfig(WithColumn("total", "{type: int8, on_error: '+007'}"), "t");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->tables.at("orders").columns.at("total").type, "bigint");
  EXPECT_EQ(c->tables.at("orders").columns.at("total").on_error, "7");
}

TEST_F(ConfigTest, ValueNotValidForType) {
  Status s = Fails(WithColumn("flag", "{type: boolean, value: perhaps}"));
  EXPECT_THAT(s.message(), HasSubstr("tables.orders.columns.flag.value: is not a valid boolean"));
}

TEST_F(ConfigTest, ValueNowNeedsATimeType) {
  Status s = Fails(WithColumn("migrated_at", "{type: bigint, value: now}"));
  EXPECT_THAT(s.message(), HasSubstr("now needs type timestamptz"));
}

TEST_F(ConfigTest, ValueWithoutTypeDefaults) {
  StatusOr<Config> c = ParseConfig(
      Minimal("tables: {orders: {columns: {a: {value: now}, b: {value: hello}}}}\n"), "t");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->tables.at("orders").columns.at("a").type, "timestamp with time zone");
  EXPECT_EQ(c->tables.at("orders").columns.at("b").type, "text");
}

TEST_F(ConfigTest, ColumnWithoutRule) {
  Status s = Fails(Minimal("tables: {orders: {columns: {total: }}}\n"));
  EXPECT_THAT(s.message(), HasSubstr("tables.orders.columns.total: has no rule"));
}

TEST_F(ConfigTest, TwoColumnsRenamedToOneName) {
  Status s = Fails(Minimal("tables: {orders: {columns: {a: {rename: c}, b: {rename: c}}}}\n"));
  EXPECT_THAT(s.message(), HasSubstr("columns a and b both map to target column c"));
}

TEST_F(ConfigTest, TwoTablesRenamedToOneName) {
  Status s = Fails(Minimal("tables: {a: {rename: c}, b: {rename: c}}\n"));
  EXPECT_THAT(s.message(), HasSubstr("tables a and b both map to target table c"));
}

TEST_F(ConfigTest, SumColumnsMustBeAList) {
  Status s = Fails(Minimal("tables: {orders: {sum_columns: total_cents}}\n"));
  EXPECT_THAT(s.message(), HasSubstr("tables.orders.sum_columns: expected a list"));
}

TEST_F(ConfigTest, EncryptWithoutKeyNamesTheColumn) {
  Status s = Fails(Minimal("tables: {creators: {columns: {payout_email: {encrypt: true}}}}\n"));
  EXPECT_THAT(s.message(), AllOf(HasSubstr("encryption.key: tables.creators.columns.payout_email"),
                                 HasSubstr("openssl rand -base64 32")));
}

TEST_F(ConfigTest, SecretsWithoutKey) {
  Status s = Fails(
      "pipeline: rawdog\nsource: {url: x}\ntarget: {url: x}\n"
      "tenant: {slug: rawdog, secrets: {api: abc}}\n");
  EXPECT_THAT(s.message(), HasSubstr("encryption.key: tenant.secrets needs a key"));
}

TEST_F(ConfigTest, KeyOfWrongLengthDoesNotEchoTheKey) {
  setenv("TS_TEST_SHORT_KEY", "c2hvcnRrZXk=", 1);
  Status s = Fails(Minimal("encryption: {key: \"${TS_TEST_SHORT_KEY}\"}\n"));
  EXPECT_THAT(s.message(), AllOf(HasSubstr("encryption.key"), HasSubstr("not 32"),
                                 Not(HasSubstr("c2hvcnRrZXk"))));
}

TEST_F(ConfigTest, KeyAndKeyFileTogether) {
  Status s = Fails(Minimal("encryption: {key: \"${TS_TEST_KEY}\", key_file: /tmp/k}\n"));
  EXPECT_THAT(s.message(), HasSubstr("encryption: set key or key_file, not both"));
}

TEST_F(ConfigTest, MissingKeyFile) {
  Status s = Fails(Minimal("encryption: {key_file: /nonexistent/tenantsync.key}\n"));
  EXPECT_THAT(s.message(), HasSubstr("encryption.key_file"));
}

// --- encryption.key_id and encryption.previous_keys (key rotation)

std::string OtherTestKey() {
  std::string k(32, '\0');
  for (int i = 0; i < 32; ++i) k[i] = static_cast<char>(200 - i);
  return Base64Encode(k);
}

TEST_F(ConfigTest, PreviousKeysAreParsedAndLoaded) {
  setenv("TS_TEST_OLD_KEY", OtherTestKey().c_str(), 1);
  std::string old_id = Cipher::FromBase64Key(OtherTestKey())->key_id();
  std::string cur_id = Cipher::FromBase64Key(TestKey())->key_id();
  StatusOr<Config> c = ParseConfig(
      Minimal("encryption:\n  key: \"${TS_TEST_KEY}\"\n  key_id: " + cur_id +
              "\n  previous_keys:\n    - {key_id: " + old_id +
              ", key: \"${TS_TEST_OLD_KEY}\"}\n"),
      "test.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->encryption.key_id, cur_id);
  ASSERT_EQ(c->encryption.previous_keys.size(), 1u);
  EXPECT_EQ(c->encryption.previous_keys[0].key_id, old_id);
  EXPECT_EQ(c->encryption.previous_keys[0].key, OtherTestKey());
  StatusOr<Cipher> ring = Cipher::FromConfig(c->encryption);
  ASSERT_TRUE(ring.ok()) << ring.status().ToString();
  EXPECT_EQ(ring->key_ids(), (std::vector<std::string>{cur_id, old_id}));
}

TEST_F(ConfigTest, PreviousKeysMustBeAList) {
  Status s = Fails(Minimal("encryption: {key: \"${TS_TEST_KEY}\", previous_keys: abc}\n"));
  EXPECT_THAT(s.message(), HasSubstr("encryption.previous_keys: expected a list of older keys"));
}

TEST_F(ConfigTest, PreviousKeyEntryMustBeAMapping) {
  Status s = Fails(Minimal("encryption: {key: \"${TS_TEST_KEY}\", previous_keys: [abc]}\n"));
  EXPECT_THAT(s.message(), HasSubstr("encryption.previous_keys[1]: expected a mapping"));
  EXPECT_THAT(s.message(), Not(HasSubstr("abc")));
}

TEST_F(ConfigTest, PreviousKeyEntryUnknownKey) {
  Status s =
      Fails(Minimal("encryption: {key: \"${TS_TEST_KEY}\", previous_keys: [{kye: abc}]}\n"));
  EXPECT_THAT(s.message(),
              HasSubstr("encryption.previous_keys[1]: unknown key 'kye'; expected one of key_id, "
                        "key, key_file"));
}

TEST_F(ConfigTest, PreviousKeyEntryWithoutKey) {
  Status s = Fails(
      Minimal("encryption: {key: \"${TS_TEST_KEY}\", previous_keys: [{key_id: 1a2b3c4d}]}\n"));
  EXPECT_THAT(s.message(), HasSubstr("encryption.previous_keys[1]: needs key or key_file"));
}

TEST_F(ConfigTest, PreviousKeyEntryWithKeyAndKeyFile) {
  setenv("TS_TEST_OLD_KEY", OtherTestKey().c_str(), 1);
  Status s = Fails(Minimal(
      "encryption: {key: \"${TS_TEST_KEY}\", previous_keys: [{key: \"${TS_TEST_OLD_KEY}\", "
      "key_file: /tmp/k}]}\n"));
  EXPECT_THAT(s.message(),
              HasSubstr("encryption.previous_keys[1]: set key or key_file, not both"));
}

TEST_F(ConfigTest, BadPreviousKeyNamesTheEntryWithoutEchoingIt) {
  setenv("TS_TEST_SHORT_KEY", "c2hvcnRrZXk=", 1);
  Status s = Fails(Minimal(
      "encryption: {key: \"${TS_TEST_KEY}\", previous_keys: [{key: \"${TS_TEST_SHORT_KEY}\"}]}\n"));
  EXPECT_THAT(s.message(), AllOf(HasSubstr("test.yaml: encryption.previous_keys[1].key: "),
                                 HasSubstr("not 32"), Not(HasSubstr("c2hvcnRrZXk"))));
}

TEST_F(ConfigTest, PreviousKeyFileMissing) {
  Status s = Fails(Minimal(
      "encryption: {key: \"${TS_TEST_KEY}\", previous_keys: [{key_file: /nonexistent/old.key}]}\n"));
  EXPECT_THAT(s.message(), HasSubstr("encryption.previous_keys[1].key_file: /nonexistent/old.key"));
}

TEST_F(ConfigTest, PreviousKeyEqualToCurrentKey) {
  Status s = Fails(Minimal(
      "encryption: {key: \"${TS_TEST_KEY}\", previous_keys: [{key: \"${TS_TEST_KEY}\"}]}\n"));
  EXPECT_THAT(s.message(), HasSubstr("encryption.previous_keys[1]: is the current key"));
  EXPECT_THAT(s.message(), Not(HasSubstr(TestKey())));
}

TEST_F(ConfigTest, PreviousKeysWithoutCurrentKey) {
  setenv("TS_TEST_OLD_KEY", OtherTestKey().c_str(), 1);
  Status s = Fails(Minimal("encryption: {previous_keys: [{key: \"${TS_TEST_OLD_KEY}\"}]}\n"));
  EXPECT_THAT(s.message(), HasSubstr("encryption: key_id and previous_keys need the current key"));
}

TEST_F(ConfigTest, KeyIdMustMatchTheKey) {
  Status s = Fails(Minimal("encryption: {key: \"${TS_TEST_KEY}\", key_id: 0badc0de}\n"));
  EXPECT_THAT(s.message(),
              AllOf(HasSubstr("test.yaml: encryption.key_id: is 0badc0de but the configured key "
                              "has id " +
                              Cipher::FromBase64Key(TestKey())->key_id()),
                    Not(HasSubstr(TestKey()))));
}

TEST_F(ConfigTest, SecretValuesNeverAppearInErrors) {
  // A type error after the secrets were expanded must not print them.
  Status s = Fails(
      "pipeline: rawdog\nsource: {url: \"${TS_TEST_SOURCE}\"}\n"
      "target: {url: \"${TS_TEST_TARGET}\", create_tables: \"${TS_TEST_SOURCE}\"}\n"
      "tenant: {slug: rawdog}\n");
  EXPECT_THAT(s.message(), AllOf(HasSubstr("target.create_tables"), Not(HasSubstr("s3cret"))));
}

TEST_F(ConfigTest, InvalidYamlNamesTheLine) {
  Status s = Fails("pipeline: rawdog\nsource: {url: x\n");
  EXPECT_THAT(s.message(), AllOf(HasSubstr("invalid YAML"), HasSubstr("line ")));
}

TEST_F(ConfigTest, ControlCharactersInMessagesAreReplaced) {
  Status s = Fails(Minimal("\"bad\\nkey\": 1\n"));
  EXPECT_THAT(s.message(), HasSubstr("unknown key 'bad?key'"));
  s = Fails("pipeline: \"\\q\"\n");  // yaml-cpp quotes the bad escape character
  EXPECT_THAT(s.message(), HasSubstr("invalid YAML"));
}

TEST_F(ConfigTest, EmptyFile) {
  Status s = Fails("");
  EXPECT_THAT(s.message(), HasSubstr("the file is empty"));
}

TEST_F(ConfigTest, TopLevelNotAMapping) {
  Status s = Fails("- a\n- b\n");
  EXPECT_THAT(s.message(), HasSubstr("expected a mapping of keys"));
}

TEST_F(ConfigTest, DuplicateKey) {
  Status s = Fails(Minimal("pipeline: other\n"));
  EXPECT_THAT(s.message(), HasSubstr("pipeline: key appears twice"));
}

TEST_F(ConfigTest, MissingFile) {
  StatusOr<Config> c = LoadConfig("/nonexistent/rawdog.yaml");
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), AllOf(StartsWith("/nonexistent/rawdog.yaml: "),
                                          HasSubstr("can not read"), HasSubstr("-c")));
}

// ---- tables.<t>.relations: logical relations validate checks for orphans ----------------------

// A valid config whose line_items table has `relations:` set to `rels` (flow-style YAML).
std::string WithRelations(const std::string& rels, const std::string& more_tables = "") {
  return "pipeline: rawdog\n"
         "source: {url: \"${TS_TEST_SOURCE}\"}\n"
         "target: {url: \"${TS_TEST_TARGET}\"}\n"
         "tenant: {slug: rawdog}\n"
         "tables:\n"
         "  line_items:\n"
         "    relations: " +
         rels + "\n" + more_tables;
}

TEST_F(ConfigTest, RelationsAreParsedInOrderWithExpansion) {
  setenv("TS_TEST_PARENT", "orders", 1);
  StatusOr<Config> c = ParseConfig(
      WithRelations("{item_order: {columns: [order_id], references: \"${TS_TEST_PARENT}\"}, "
                    "item_pair: {columns: [order_id, product_id], references: pairs, "
                    "ref_columns: [\"${TS_TEST_UNSET:-oid}\", pid]}}"),
      "test.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  const TableConfig* t = c->FindTable("line_items");
  ASSERT_NE(t, nullptr);
  ASSERT_EQ(t->relations.size(), 2u);
  EXPECT_EQ(t->relations[0].name, "item_order");
  EXPECT_EQ(t->relations[0].columns, std::vector<std::string>{"order_id"});
  EXPECT_EQ(t->relations[0].references, "orders");
  EXPECT_TRUE(t->relations[0].ref_columns.empty());  // the parent's primary key
  EXPECT_EQ(t->relations[1].name, "item_pair");
  EXPECT_EQ(t->relations[1].columns, (std::vector<std::string>{"order_id", "product_id"}));
  EXPECT_EQ(t->relations[1].ref_columns, (std::vector<std::string>{"oid", "pid"}));
  unsetenv("TS_TEST_PARENT");
}

TEST_F(ConfigTest, RelationsNotAMapping) {
  Status s = Fails(WithRelations("[order_id]"));
  EXPECT_THAT(s.message(),
              HasSubstr("tables.line_items.relations: expected a mapping of relations"));
}

TEST_F(ConfigTest, RelationUnknownKey) {
  Status s = Fails(WithRelations("{r: {columns: [order_id], references: orders, parent: x}}"));
  EXPECT_THAT(s.message(), AllOf(HasSubstr("tables.line_items.relations.r: unknown key 'parent'"),
                                 HasSubstr("columns, references, ref_columns")));
}

TEST_F(ConfigTest, RelationWithoutRule) {
  Status s = Fails(WithRelations("{r: }"));
  EXPECT_THAT(s.message(), AllOf(HasSubstr("tables.line_items.relations.r: is empty"),
                                 HasSubstr("references: orders")));
}

TEST_F(ConfigTest, RelationMissingColumns) {
  Status s = Fails(WithRelations("{r: {references: orders}}"));
  EXPECT_THAT(s.message(), HasSubstr("tables.line_items.relations.r.columns: is required"));
}

TEST_F(ConfigTest, RelationColumnsNotAList) {
  EXPECT_THAT(Fails(WithRelations("{r: {columns: order_id, references: orders}}")).message(),
              HasSubstr("relations.r.columns: expected a non-empty list of column names"));
  EXPECT_THAT(Fails(WithRelations("{r: {columns: [], references: orders}}")).message(),
              HasSubstr("relations.r.columns: expected a non-empty list"));
  EXPECT_THAT(Fails(WithRelations("{r: {columns: [[a]], references: orders}}")).message(),
              HasSubstr("relations.r.columns: expected a non-empty list"));
}

TEST_F(ConfigTest, RelationColumnTwice) {
  Status s = Fails(WithRelations("{r: {columns: [order_id, order_id], references: orders}}"));
  EXPECT_THAT(s.message(), HasSubstr("relations.r.columns: names order_id twice"));
}

TEST_F(ConfigTest, RelationMissingReferences) {
  Status s = Fails(WithRelations("{r: {columns: [order_id]}}"));
  EXPECT_THAT(s.message(), AllOf(HasSubstr("tables.line_items.relations.r.references: is required"),
                                 HasSubstr("references: orders")));
}

TEST_F(ConfigTest, RelationRefColumnsCountMustMatch) {
  Status s = Fails(WithRelations(
      "{r: {columns: [order_id, product_id], references: orders, ref_columns: [id]}}"));
  EXPECT_THAT(s.message(),
              AllOf(HasSubstr("relations.r.ref_columns: has 1 columns but columns has 2"),
                    HasSubstr("one referenced column per column")));
}

TEST_F(ConfigTest, RelationUnsetVariableIsNamed) {
  Status s = Fails(WithRelations("{r: {columns: [order_id], references: \"${TS_TEST_UNSET}\"}}"));
  EXPECT_THAT(s.message(),
              AllOf(HasSubstr("relations.r.references"), HasSubstr("TS_TEST_UNSET is not set")));
}

TEST_F(ConfigTest, RelationOfASkippedTable) {
  Status s =
      Fails(Minimal("tables:\n  line_items:\n    skip: true\n"
                    "    relations: {r: {columns: [order_id], references: orders}}\n"));
  EXPECT_THAT(s.message(), AllOf(HasSubstr("tables.line_items.relations: the table has skip: true"),
                                 HasSubstr("remove relations or skip")));
}

TEST_F(ConfigTest, RelationToASkippedTable) {
  Status s = Fails(
      WithRelations("{r: {columns: [order_id], references: orders}}", "  orders: {skip: true}\n"));
  EXPECT_THAT(s.message(),
              AllOf(HasSubstr("tables.line_items.relations.r.references: table orders has skip: "
                              "true"),
                    HasSubstr("remove the relation or the skip")));
}

TEST(ConfigFromFlagsTest, FillsDefaults) {
  StatusOr<Config> c = ConfigFromFlags("postgresql://a/b", "postgresql://c/d", "rawdog");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->pipeline, "rawdog");
  EXPECT_EQ(c->source.schema, "public");
  EXPECT_EQ(c->source.slot, "tenantsync_rawdog");
  EXPECT_EQ(c->target.schema, "tenant_rawdog");
  EXPECT_EQ(c->state_dir, "./state/rawdog");
  EXPECT_TRUE(c->tables.empty());
  EXPECT_TRUE(c->path.empty());
}

TEST(ConfigFromFlagsTest, MissingFlagIsNamed) {
  EXPECT_THAT(ConfigFromFlags("", "t", "rawdog").status().message(), HasSubstr("--source"));
  EXPECT_THAT(ConfigFromFlags("s", "", "rawdog").status().message(), HasSubstr("--target"));
  EXPECT_THAT(ConfigFromFlags("s", "t", "").status().message(), HasSubstr("--tenant"));
}

TEST(ConfigFromFlagsTest, BadSlug) {
  StatusOr<Config> c = ConfigFromFlags("s", "t", "Raw Dog");
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("--tenant: must match [a-z0-9_]+"));
}

}  // namespace
}  // namespace tenantsync

namespace tenantsync {
namespace {

TEST(ConfigJournalTest, GroupCommitDefaultsOnAndCanBeTurnedOff) {
  const std::string base =
      "pipeline: p\nsource: {url: 'postgresql://a/b'}\ntarget: {url: 'postgresql://c/d'}\n"
      "tenant: {slug: s}\n";
  auto on = ParseConfig(base, "t.yaml");
  ASSERT_TRUE(on.ok()) << on.status().ToString();
  EXPECT_TRUE(on->journal.group_commit);
  auto off = ParseConfig(base + "journal: {group_commit: false}\n", "t.yaml");
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_FALSE(off->journal.group_commit);
  auto bad = ParseConfig(base + "journal: {group_commit: sometimes}\n", "t.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("journal.group_commit"), std::string::npos)
      << bad.status().message();
}

TEST(ConfigSourceTest, StreamInProgressDefaultsOnAndCanBeTurnedOff) {
  const std::string tail = "target: {url: 'postgresql://c/d'}\ntenant: {slug: s}\n";
  auto on = ParseConfig("pipeline: p\nsource: {url: 'postgresql://a/b'}\n" + tail, "t.yaml");
  ASSERT_TRUE(on.ok()) << on.status().ToString();
  EXPECT_TRUE(on->source.stream_in_progress);
  auto off = ParseConfig(
      "pipeline: p\nsource: {url: 'postgresql://a/b', stream_in_progress: false}\n" + tail,
      "t.yaml");
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_FALSE(off->source.stream_in_progress);
  auto bad = ParseConfig(
      "pipeline: p\nsource: {url: 'postgresql://a/b', stream_in_progress: 2}\n" + tail, "t.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("source.stream_in_progress"), std::string::npos)
      << bad.status().message();
}

TEST(ConfigSourceTest, LogicalDecodingWorkMemDefaultsTo4MBAndMustBeASize) {
  const std::string tail = "target: {url: 'postgresql://c/d'}\ntenant: {slug: s}\n";
  auto def = ParseConfig("pipeline: p\nsource: {url: 'postgresql://a/b'}\n" + tail, "t.yaml");
  ASSERT_TRUE(def.ok()) << def.status().ToString();
  EXPECT_EQ(def->source.logical_decoding_work_mem, "4MB");
  for (const char* ok : {"''", "64kB", "'16 MB'", "1GB", "65536"}) {
    auto c = ParseConfig("pipeline: p\nsource: {url: 'postgresql://a/b', logical_decoding_work_mem: " +
                             std::string(ok) + "}\n" + tail,
                         "t.yaml");
    EXPECT_TRUE(c.ok()) << ok << ": " << c.status().ToString();
  }
  for (const char* bad : {"4mb", "MB", "'4 MiB'", "-1MB", "4MB;drop"}) {
    auto c = ParseConfig("pipeline: p\nsource: {url: 'postgresql://a/b', logical_decoding_work_mem: " +
                             std::string(bad) + "}\n" + tail,
                         "t.yaml");
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_NE(c.status().message().find("source.logical_decoding_work_mem"), std::string::npos)
        << c.status().message();
  }
}

}  // namespace
}  // namespace tenantsync
