"""The reward catalogue: rewards members buy with points, their stock and their orders.

Pure logic only: definitions and their validation (:mod:`.definition`), and the decisions a
redemption or a catalogue page needs (:mod:`.logic`): the cost for a tier, visibility, limits,
low-stock alerts and the order's fulfilment states.
"""
