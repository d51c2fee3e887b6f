-- System C: the three services' tables in ONE database, each service in its own schema.
-- An order is one local PostgreSQL transaction over all three: no distribution, no coordinator.
CREATE SCHEMA IF NOT EXISTS inventory;
CREATE SCHEMA IF NOT EXISTS payments;
CREATE SCHEMA IF NOT EXISTS shipping;

CREATE TABLE IF NOT EXISTS inventory.stock
(
    sku     text   PRIMARY KEY,
    on_hand bigint NOT NULL CHECK (on_hand >= 0)
);

CREATE TABLE IF NOT EXISTS payments.account
(
    account text   PRIMARY KEY,
    balance bigint NOT NULL CHECK (balance >= 0)
);

CREATE TABLE IF NOT EXISTS shipping.shipment
(
    order_id   text        PRIMARY KEY,
    account    text        NOT NULL,
    sku        text        NOT NULL,
    quantity   integer     NOT NULL CHECK (quantity > 0),
    amount     bigint      NOT NULL CHECK (amount > 0),
    address    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
