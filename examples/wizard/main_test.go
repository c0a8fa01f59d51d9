package main

import (
	"testing"

	"github.com/tgsession/session/examples/internal/demo/demotest"
)

// Two orders: Alice's goes through buttons, re-asks on invalid input, toggles toppings and changes her address before confirming; Bob goes back a step, cancels, and then lets a new order time out, after which his message reaches the bot's ordinary handler.
func TestDemo(t *testing.T) {
	demotest.Play(t, run, []string{
		"Alice: hi",
		"  bot: Send /order to order a pizza.",
		"Alice: /order",
		"  bot: Which size? [Small] [Large]",
		"Alice: large please",
		"  bot: Please press one of the buttons.",
		"  bot: Which size? [Small] [Large]",
		"Alice: [presses Large]",
		"  bot: Toppings? Press to add or remove, then Done. [cheese] [mushrooms] [olives] [« Back] [Done]",
		"Alice: [presses mushrooms]",
		"  bot: Toppings? Press to add or remove, then Done. [cheese] [✓ mushrooms] [olives] [« Back] [Done]",
		"Alice: [presses olives]",
		"  bot: Toppings? Press to add or remove, then Done. [cheese] [✓ mushrooms] [✓ olives] [« Back] [Done]",
		"Alice: [presses ✓ mushrooms]",
		"  bot: Toppings? Press to add or remove, then Done. [cheese] [mushrooms] [✓ olives] [« Back] [Done]",
		"Alice: [presses Done]",
		"  bot: Where should we deliver it?",
		"Alice: home",
		"  bot: That does not look like an address: a street and a number, please.",
		"  bot: Where should we deliver it?",
		"Alice: 12 Oak Street",
		"  bot: A large pizza with olives, to 12 Oak Street. Order it? [Yes] [Change address]",
		"Alice: [presses Change address]",
		"  bot: Where should we deliver it?",
		"Alice: 14 Oak Street",
		"  bot: A large pizza with olives, to 14 Oak Street. Order it? [Yes] [Change address]",
		"Alice: [presses Yes]",
		"  bot: Order #1 placed: a large pizza with olives. 🍕",
		"Bob: /order",
		"  bot: Which size? [Small] [Large]",
		"Bob: [presses Small]",
		"  bot: Toppings? Press to add or remove, then Done. [cheese] [mushrooms] [olives] [« Back] [Done]",
		"Bob: [presses « Back]",
		"  bot: Which size? [Small] [Large]",
		"Bob: [presses Large]",
		"  bot: Toppings? Press to add or remove, then Done. [cheese] [mushrooms] [olives] [« Back] [Done]",
		"Bob: /cancel",
		"  bot: Order cancelled.",
		"Bob: /order",
		"  bot: Which size? [Small] [Large]",
		"(20 minutes pass)",
		"Bob: small",
		"  bot: Your unfinished order was dropped after 15 minutes.",
		"  bot: Send /order to order a pizza.",
	})
}
