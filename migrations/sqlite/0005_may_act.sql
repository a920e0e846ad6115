-- deputy schema 5: the party a delegation token names as the only one that
-- may exchange it next (RFC 8693 §4.4 `may_act`, deputy's exchange extension),
-- kept so introspection, the admin API and trace show it like `act`.

ALTER TABLE tokens ADD COLUMN may_act TEXT;
