-- Coaching: the catalog (courses, mentors), assignments as immutable events, their measured
-- effect, and the webhook outbox.
--
-- Query patterns: a site's catalog is read whole (tens of rows); an assignment's current state is
-- derived by folding its events, and boards fold every event of a site (thousands of rows at
-- most); evaluations are read per assignment and per site for effectiveness; the outbox is
-- scanned for messages that are due (a handful at a time).

-- Courses: one row per version (ReplacingMergeTree(version)); `FINAL` gives the current entry.
-- ORDER BY (site, course_id): the catalog is per site, because the steps a course addresses are
-- the steps of that site's process.
CREATE TABLE IF NOT EXISTS courses
(
    site             String,
    course_id        String   COMMENT 'short name, unique per site, e.g. offer-basics',
    title            String,
    description      String,
    link             String   COMMENT 'where the course is taken (LMS URL); may be empty',
    expected_minutes UInt32   COMMENT 'how long the course takes, as planned',
    steps            Array(String) COMMENT 'the process steps the course addresses',
    self_paced       Bool     COMMENT 'true: the manager marks it done; false: a trainer runs it',
    retired          Bool     COMMENT 'no longer offered for new assignments',
    changed_by       String,
    changed_at       DateTime64(3, 'UTC') DEFAULT now64(3),
    version          UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (site, course_id);

-- Mentors: accounts with the trainer role and the steps they coach, per site. One row per
-- version; `FINAL` gives the current list. ORDER BY (site, name) as for courses.
CREATE TABLE IF NOT EXISTS mentors
(
    site       String,
    name       String   COMMENT 'the user name of a trainer account',
    steps      Array(String) COMMENT 'the process steps this mentor coaches; empty = retired',
    changed_by String,
    changed_at DateTime64(3, 'UTC') DEFAULT now64(3),
    version    UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (site, name);

-- Every change of every coaching assignment, never updated or deleted: the assignment's state is
-- the fold of its events in `seq` order. Two writers racing for the same `seq` both insert; the
-- earlier (by `at`, then `event_id`) wins and the other is ignored by the fold, and its writer is
-- told (optimistic concurrency without transactions). MergeTree, not Replacing: nothing here
-- may ever be collapsed. ORDER BY (site, assignment_id, seq): boards read a site, `show` one
-- assignment in order.
CREATE TABLE IF NOT EXISTS coaching_events
(
    site          String,
    assignment_id UUID,
    seq           UInt32   COMMENT '0 for assigned, then one more per change',
    event_id      UUID,
    at            DateTime64(3, 'UTC'),
    actor         String   COMMENT 'user name, cli:<os user>, or coaching for automatic evaluations',
    type          LowCardinality(String) COMMENT 'assigned, scheduled, done, evaluated, followed_up, cancelled',
    reason        String,
    payload       String   COMMENT 'JSON: the values of the change (see coaching/assignments.py)'
)
ENGINE = MergeTree
ORDER BY (site, assignment_id, seq);

-- Measured effects: one row per assignment and checkpoint (0 = the evaluation after the coaching,
-- 30 and 60 = the follow-ups that ask whether it lasted). ReplacingMergeTree(version) keyed on
-- (site, assignment_id, checkpoint): a second evaluator racing the first writes the same figures
-- (the bootstrap is seeded), and `FINAL` keeps one. The verdict also goes into coaching_events.
CREATE TABLE IF NOT EXISTS coaching_evaluations
(
    site                String,
    assignment_id       UUID,
    checkpoint          UInt16   COMMENT '0 = after the coaching, 30 / 60 = days after it was done',
    evaluated_at        DateTime64(3, 'UTC'),
    pre_since           Date,
    pre_until           Date,
    post_since          Date,
    post_until          Date,
    verdict             LowCardinality(String) COMMENT 'improved, no_change, worse, insufficient_data',
    target_met          Nullable(Bool),
    pre_n               UInt32,
    post_n              UInt32,
    pre_median_ms       Nullable(Float64),
    post_median_ms      Nullable(Float64),
    change_pct          Nullable(Float64),
    relative_effect_pct Nullable(Float64) COMMENT 'difference-in-differences against peers, in %',
    minutes_saved_per_week Nullable(Float64),
    figures             String   COMMENT 'JSON: every figure of the evaluation (intervals, p-values, peers)',
    version             UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (site, assignment_id, checkpoint);

-- Webhook notifications waiting to be delivered, and their delivery record. One row per version
-- of a message (ReplacingMergeTree(version)); `FINAL` gives its current state. The webhook URL is
-- not stored (it is often a secret, e.g. a Slack incoming webhook): delivery uses the configured
-- one. Tiny and short-lived; ORDER BY message_id, and the due scan reads it whole.
CREATE TABLE IF NOT EXISTS outbox
(
    message_id      UUID,
    site            String,
    topic           LowCardinality(String) COMMENT 'e.g. coaching.assigned',
    object          String   COMMENT 'what the message is about, e.g. the assignment id',
    body            String   COMMENT 'the JSON posted, with a Slack-compatible text field',
    created_at      DateTime64(3, 'UTC'),
    attempts        UInt16,
    next_attempt_at Nullable(DateTime64(3, 'UTC')) COMMENT 'null once delivered or given up',
    last_error      String,
    delivered_at    Nullable(DateTime64(3, 'UTC')),
    version         UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY message_id;
