-- deputy schema 17: a refresh family issued for a task (CIBA: the agent
-- asked the person for one task) keeps the task, so every access token
-- refreshed from it still names the task (the audit trail answers "which
-- task" after a refresh too), and stopping the task from the account page
-- ends the family. NULL for families not tied to a task (sign-ins).
-- The account page lists a person's families: index them by person.

ALTER TABLE refresh_tokens ADD COLUMN task TEXT;
CREATE INDEX refresh_tokens_user ON refresh_tokens(user_id);
