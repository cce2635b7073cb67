-- The type zoo: every kind of value the decoders must carry byte-exact, plus every message kind.
-- Used by capture.sh (fixtures) and by tests/stream_test.cc (live, both plugins).
-- Part 1 (schema) runs before the slots exist; part 2 (workload) after.
--@@schema
CREATE TYPE mood AS ENUM ('happy', 'sad', 'very "odd" mood ✓');
CREATE TABLE zoo (
  id bigint PRIMARY KEY,
  amount numeric(20,6),
  free_numeric numeric,
  cents bigint,
  i int,
  s smallint,
  f8 double precision,
  f4 real,
  ts timestamptz,
  ts_plain timestamp,
  d date,
  t time,
  ttz timetz,
  iv interval,
  u uuid,
  j jsonb,
  js json,
  ints int[],
  texts text[],
  m mood,
  moods mood[],
  b bytea,
  txt text,
  vc varchar(20),
  ch char(3),
  flag boolean,
  addr inet,
  big text
);
ALTER TABLE zoo ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE TABLE nopk (a int, b text, c jsonb);
ALTER TABLE nopk REPLICA IDENTITY FULL;
CREATE TABLE trunc_me (id int PRIMARY KEY, v text);
CREATE TABLE "Odd ""Name""" ("Col A" int PRIMARY KEY, "ünï" text);
-- NaN / Infinity: wal2json 2.5 prints them as JSON null (a known divergence, tested apart).
CREATE TABLE special_numbers (id int PRIMARY KEY, n numeric, f float8);
--@@workload
INSERT INTO trunc_me VALUES (1, 'one'), (2, 'two');
BEGIN;
INSERT INTO zoo VALUES
  (1, 12345678901234.123456, 123456789012345678901234567890.123456789012345678901, 9223372036854775807,
   -2147483648, 32767, 1.5e300, 3.25, '2024-02-29 23:59:59.999999+00', '1999-12-31 23:59:59.5',
   '2024-01-01', '23:59:59.999999', '12:00:00+05:30', '1 year 2 mons 3 days 04:05:06.789',
   'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
   '{"k": "v\"quote\\back", "n": 1.10, "nested": {"arr": [1, null, true]}, "u": "日本 😀"}',
   '{ "keep" : "spacing",  "dup": 1, "dup": 2 }',
   '{1,NULL,-3}', '{"a b",NULL,"c\"d","e\\f",""}', 'happy', '{happy,sad}',
   '\x00ff10deadbeef', E'tab\there\nnewline\r\x01\x1f back\\slash "quotes" ''single'' héllo ✓ 日本 😀',
   'short', 'ab', true, '192.168.0.1/24', repeat('TOASTED-' || md5('x'), 400)),
  (2, -0.000001, 0, -1, 0, -32768, -0.0, 1e-30, 'infinity', '-infinity', 'infinity', '00:00:00',
   '00:00:00-12', '-1 days', '00000000-0000-0000-0000-000000000000', '[]', 'null', '{}', '{}',
   'sad', '{}', '\x', '', '', '', false, '::1', ''),
  (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '-infinity', NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
COMMIT;
UPDATE zoo SET i = i + 1, txt = 'updated' WHERE id = 1;
UPDATE zoo SET id = 100, m = 'very "odd" mood ✓' WHERE id = 2;
DELETE FROM zoo WHERE id = 3;
INSERT INTO nopk VALUES (1, 'x', '{"a":1}'), (NULL, NULL, NULL);
UPDATE nopk SET b = 'y' WHERE a = 1;
DELETE FROM nopk WHERE a = 1;
TRUNCATE trunc_me RESTART IDENTITY;
INSERT INTO "Odd ""Name""" VALUES (7, 'ünïcode');
SELECT pg_logical_emit_message(false, 'nontx', 'hello outside');
BEGIN;
SELECT pg_logical_emit_message(true, 'tx', E'in\ttransaction ✓');
INSERT INTO special_numbers VALUES (1, 'NaN', 'Infinity'), (2, 1.5, '-Infinity');
COMMIT;
