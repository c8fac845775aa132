-- When a drawdown began, as far as the data says: `start_date` is dated on up to 90 days of daily
-- medians; when the data begins inside the drawdown, the flag says "at least since start_date".
-- A flag stored before this column was dated on the 4-week look-back alone and is marked false,
-- as it was shown.
ALTER TABLE flags ADD COLUMN IF NOT EXISTS start_at_least Bool DEFAULT false COMMENT 'the data begins inside the drawdown: it began on start_date or earlier' AFTER start_date;
