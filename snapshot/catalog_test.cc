// Pure helpers of catalog, plan, preflight and the chunk predicate (no server needed).
#include "snapshot/catalog.h"

#include <gtest/gtest.h>

#include "snapshot/internal/chunk_copier.h"
#include "snapshot/internal/plan.h"
#include "snapshot/preflight.h"

namespace tenantsync::snapshot {
namespace {

CatalogTable Table(std::string name, std::vector<std::pair<std::string, std::string>> fks) {
  CatalogTable t;
  t.schema = "public";
  t.name = std::move(name);
  for (auto& [n, ref] : fks) {
    CatalogConstraint c;
    c.name = n;
    c.kind = 'f';
    c.ref_schema = "public";
    c.ref_table = ref;
    t.constraints.push_back(c);
  }
  return t;
}

TEST(FkOrder, ParentsBeforeChildrenTiesByName) {
  Catalog cat;
  cat.schema = "public";
  cat.tables = {Table("line_items", {{"a", "orders"}, {"b", "products"}}),
                Table("orders", {{"c", "customers"}}), Table("customers", {}),
                Table("products", {}), Table("zeta", {})};
  FkOrder o = ComputeFkOrder(cat, {"line_items", "orders", "customers", "products", "zeta"});
  EXPECT_EQ(o.order, (std::vector<std::string>{"customers", "orders", "products", "line_items",
                                               "zeta"}));
  EXPECT_EQ(o.parents["line_items"], (std::set<std::string>{"orders", "products"}));
  EXPECT_TRUE(o.cycle_edges.empty());
}

TEST(FkOrder, SelfReferenceAndUnmappedParentsAreIgnored) {
  Catalog cat;
  cat.schema = "public";
  cat.tables = {Table("categories", {{"p", "categories"}}), Table("items", {{"x", "skipped"}})};
  FkOrder o = ComputeFkOrder(cat, {"categories", "items"});
  EXPECT_EQ(o.order, (std::vector<std::string>{"categories", "items"}));
  EXPECT_TRUE(o.parents["categories"].empty());
  EXPECT_TRUE(o.parents["items"].empty());
}

TEST(FkOrder, CycleIsBrokenAndReported) {
  Catalog cat;
  cat.schema = "public";
  cat.tables = {Table("a", {{"ab", "b"}}), Table("b", {{"ba", "a"}}), Table("c", {{"ca", "a"}})};
  FkOrder o = ComputeFkOrder(cat, {"a", "b", "c"});
  EXPECT_EQ(o.order.size(), 3u);
  EXPECT_EQ(o.cycle_edges, (std::vector<std::string>{"a -> b"}));
  EXPECT_EQ(o.order.back(), "c");
}

TEST(Repoint, TypesAndExpressionsMoveIntoTheTenantSchema) {
  EXPECT_EQ(RepointType("public.mood", "public", "tenant_x"), "\"tenant_x\".mood");
  EXPECT_EQ(RepointType("public.mood[]", "public", "tenant_x"), "\"tenant_x\".mood[]");
  EXPECT_EQ(RepointType("bigint", "public", "tenant_x"), "bigint");
  EXPECT_EQ(RepointType("\"Old Schema\".t", "Old Schema", "n"), "\"n\".t");
  EXPECT_EQ(internal::RepointExpr("nextval('public.orders_id_seq'::regclass)", "public", "tenant_x"),
            "nextval('tenant_x.orders_id_seq'::regclass)");
  EXPECT_EQ(internal::RepointExpr("'a'::public.mood", "public", "t"), "'a'::t.mood");
  // Only whole qualifiers: "mypublic.x" and "public_x" stay.
  EXPECT_EQ(internal::RepointExpr("mypublic.x + public_x.y", "public", "t"),
            "mypublic.x + public_x.y");
  EXPECT_EQ(QuoteIdentIfNeeded("orders"), "orders");
  EXPECT_EQ(QuoteIdentIfNeeded("Orders"), "\"Orders\"");
  EXPECT_EQ(QuoteIdentIfNeeded("1st"), "\"1st\"");
}

TEST(CompatibleTypes, WideningAndTextTargetsOnly) {
  EXPECT_TRUE(CompatibleTypes("bigint", "bigint"));
  EXPECT_TRUE(CompatibleTypes("integer", "bigint"));
  EXPECT_TRUE(CompatibleTypes("bigint", "numeric"));
  EXPECT_TRUE(CompatibleTypes("real", "double precision"));
  EXPECT_TRUE(CompatibleTypes("jsonb", "text"));
  EXPECT_TRUE(CompatibleTypes("json", "jsonb"));
  EXPECT_TRUE(CompatibleTypes("character varying(20)", "text"));
  EXPECT_TRUE(CompatibleTypes("timestamp without time zone", "timestamp with time zone"));
  EXPECT_FALSE(CompatibleTypes("bigint", "integer"));
  EXPECT_FALSE(CompatibleTypes("double precision", "bigint"));
  EXPECT_FALSE(CompatibleTypes("text", "bigint"));
  EXPECT_FALSE(CompatibleTypes("uuid", "bigint"));
  EXPECT_FALSE(CompatibleTypes("text", "character varying(10)"));
}

TEST(ChunkPredicate, CtidRanges) {
  internal::Chunk single;
  EXPECT_EQ(internal::ChunkPredicate(single), "");
  internal::Chunk first{"t", 0, 3, 0, 100};
  EXPECT_EQ(internal::ChunkPredicate(first), "ctid < '(100,0)'::tid");
  internal::Chunk mid{"t", 1, 3, 100, 200};
  EXPECT_EQ(internal::ChunkPredicate(mid), "ctid >= '(100,0)'::tid AND ctid < '(200,0)'::tid");
  internal::Chunk last{"t", 2, 3, 200, -1};
  EXPECT_EQ(internal::ChunkPredicate(last), "ctid >= '(200,0)'::tid");
}

}  // namespace
}  // namespace tenantsync::snapshot
