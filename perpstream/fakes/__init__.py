"""Test doubles of the venues: real websocket and HTTP servers on loopback that play an
exchange as its public docs describe it. Shipped with the product because ``perpstream soak``
and ``perpstream bench`` run against them; nothing in a production command imports them."""
