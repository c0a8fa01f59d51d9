module github.com/tgsession/session/bench

go 1.23

require (
	github.com/go-telegram-bot-api/telegram-bot-api/v5 v5.5.1
	github.com/tgsession/session v0.0.0-00010101000000-000000000000
)

replace github.com/tgsession/session => ../
