#!/usr/bin/env bash
# Runs once, when the `db` service initialises an empty data directory (the postgres image runs every script in
# /docker-entrypoint-initdb.d), as the superuser POSTGRES_USER. It creates the role the application connects as:
# it may log in and owns the `prodmatch` schema, and nothing else: no superuser (which could run shell commands
# with COPY ... PROGRAM), no CREATEDB, no CREATEROLE, no rights to create objects in `public`. pgvector is created
# here because CREATE EXTENSION needs the superuser; the migrations then find it installed.
# Passwords come from the environment, never from this file: PRODMATCH_DB_PASSWORD (required), PRODMATCH_DB_USER
# (default prodmatch). psql fills :"app_user" and :'app_password' in as a quoted identifier and a quoted literal.
set -eo pipefail  # not -u: the image sources a script that is not executable, and its own code must not trip
: "${PRODMATCH_DB_PASSWORD:?set PRODMATCH_DB_PASSWORD to the password of the application role}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v app_user="${PRODMATCH_DB_USER:-prodmatch}" -v app_password="$PRODMATCH_DB_PASSWORD" \
    -v database="$POSTGRES_DB" <<'SQL'
CREATE EXTENSION IF NOT EXISTS vector;
CREATE ROLE :"app_user" LOGIN PASSWORD :'app_password'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
CREATE SCHEMA prodmatch AUTHORIZATION :"app_user";
-- The migrations run CREATE SCHEMA IF NOT EXISTS, which PostgreSQL checks against the database's CREATE right
-- even when the schema exists; the app needs TEMPORARY for the worker's COPY staging tables.
GRANT CONNECT, CREATE, TEMPORARY ON DATABASE :"database" TO :"app_user";
-- The SQL functions pin pgvector's hnsw.iterative_scan (CREATE FUNCTION ... SET). Before pgvector's library is
-- loaded in a session that parameter is a placeholder, which only a superuser may store unless granted.
GRANT SET ON PARAMETER hnsw.iterative_scan TO :"app_user";
-- PostgreSQL 15+ already keeps PUBLIC from creating in `public`; say it anyway for servers upgraded from older ones.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
