"""Patient consent, the access log, and consented exchange of records between gateways.

* ``model``    purposes, categories, state keys and the consent decision (shared by the
               contracts and the gateways, so both decide alike)
* ``contract`` the ``consent`` contract: grant, revoke, link a patient's agent
* ``access``   the ``access`` contract: every access, granted or denied, and auditor review
* ``exchange`` the signed request, the holder's checks, HPKE packages, the requester's checks
* ``remote``   the requester's side of the holder's HTTP endpoint, a member's ledger over a
               node's HTTP API, ``medledger consent request``'s flow
* ``serving``  a hospital's holder over its gateway vault, served by ``medledger node start``
* ``log``      a patient's access log, each entry with an inclusion proof
* ``reviews``  the break-glass entries flagged for an organisation's auditor
* ``status``   a patient's consents at a height, with the key-history proof of the index
"""
