-- deputy PostgreSQL schema 7 (SQLite schema 17): a refresh family issued
-- for a task (CIBA) keeps the task, so refreshed access tokens still name
-- it and stopping the task ends the family. NULL for families not tied to a
-- task. The account page lists a person's families: index them by person.

ALTER TABLE refresh_tokens ADD COLUMN task TEXT;
CREATE INDEX refresh_tokens_user ON refresh_tokens(user_id);
