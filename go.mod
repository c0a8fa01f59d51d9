module github.com/tgsession/session

go 1.23

require (
	github.com/go-telegram-bot-api/telegram-bot-api/v5 v5.5.1 // indirect
	github.com/stretchr/testify v1.12.1 // indirect
)
