-- A per-site secret key for customer pseudonyms (stepwatch/sites.py Pseudonyms).
--
-- The tracker hashes a customer reference in the browser with the site's salt, which is public
-- (GET /v1/config/{key}): a short reference such as a 7-digit customer number is found again
-- from its hash by trying every value. The collector and the log import therefore store
-- HMAC-SHA256(pseudonym_key, hash) instead, and the key never leaves the backend. It lives
-- here, not in a setting, so every collector behind a load balancer uses the same one.
ALTER TABLE sites ADD COLUMN IF NOT EXISTS pseudonym_key String DEFAULT '' COMMENT 'HMAC key for stored customer pseudonyms; never leaves the backend';

-- Sites made before this column get a random key of their own. Written once into the rows (a
-- random DEFAULT would be computed again on every read), only where none is set yet, so
-- running it again changes nothing; synchronous, so the next read sees the keys.
ALTER TABLE sites UPDATE pseudonym_key = lower(hex(randomString(32))) WHERE pseudonym_key = '' SETTINGS mutations_sync = 2;

ALTER TABLE step_visits COMMENT COLUMN customer 'pseudonym: HMAC of the reference hashed by the tracker, with the site''s pseudonym_key';
