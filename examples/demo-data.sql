-- Demo inventory for `npm run demo` and the tests: hosts and their tickets.
CREATE TABLE hosts (
  id        INTEGER PRIMARY KEY,
  name      TEXT NOT NULL UNIQUE,
  ip        TEXT NOT NULL,
  os        TEXT NOT NULL,
  site      TEXT NOT NULL CHECK (site IN ('ams', 'fra', 'lon')),
  role      TEXT NOT NULL,
  last_seen TEXT NOT NULL
);
CREATE TABLE tickets (
  id       INTEGER PRIMARY KEY,
  host_id  INTEGER NOT NULL REFERENCES hosts(id),
  priority INTEGER NOT NULL CHECK (priority BETWEEN 1 AND 4),
  status   TEXT NOT NULL CHECK (status IN ('open', 'in progress', 'closed')),
  title    TEXT NOT NULL,
  opened   TEXT NOT NULL
);
CREATE VIEW open_ticket_counts AS
  SELECT h.name AS host, count(t.id) AS open_tickets
  FROM hosts h LEFT JOIN tickets t ON t.host_id = h.id AND t.status <> 'closed'
  GROUP BY h.name;
