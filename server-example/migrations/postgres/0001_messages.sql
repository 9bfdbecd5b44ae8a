-- The chat's message store (server-example/src/store/sql.rs).

-- One row: the save counter that orders rooms by use, and the bytes of all
-- the messages kept (StoreLimits::max_bytes). Each save updates it first:
-- its row lock makes the saves of several nodes take turns.
CREATE TABLE store_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    clock BIGINT NOT NULL,
    bytes BIGINT NOT NULL
);
INSERT INTO store_state (id, clock, bytes) VALUES (1, 0, 0);

-- Rooms with history: who started each (StoreLimits::rooms_per_user), when
-- it was last written to, and its messages' count and bytes.
CREATE TABLE rooms (
    id TEXT PRIMARY KEY,
    starter TEXT NOT NULL,
    last_used BIGINT NOT NULL,
    messages BIGINT NOT NULL,
    bytes BIGINT NOT NULL
);
CREATE INDEX rooms_by_starter ON rooms (starter);
CREATE INDEX rooms_by_use ON rooms (last_used);

-- An identity: an id is never given twice.
CREATE TABLE messages (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id TEXT NOT NULL,
    sender_id TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at TEXT NOT NULL,
    bytes BIGINT NOT NULL
);
CREATE INDEX messages_by_room ON messages (room_id, seq);
