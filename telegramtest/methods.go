package telegramtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
)

// Telegram's limits, in UTF-16 code units as Telegram counts them.
const (
	maxTextLen    = 4096
	maxCaptionLen = 1024
)

// call is one API call being answered.
type call struct {
	method string // as the client spelled it, e.g. "sendPhoto"
	params url.Values
	r      *http.Request
}

// apiError is an ok:false answer.
type apiError struct {
	code        int
	description string
	params      tgbotapi.ResponseParameters
}

func badRequest(description string) *apiError {
	return &apiError{code: http.StatusBadRequest, description: "Bad Request: " + description}
}

var (
	errChatNotFound   = badRequest("chat not found")
	errTextEmpty      = badRequest("message text is empty")
	errTextTooLong    = badRequest("message is too long")
	errCaptionTooLong = badRequest("message caption is too long")
	errEditNotFound   = badRequest("message to edit not found")
	errNotModified    = badRequest("message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message")
)

// mediaMethods maps the send method of each kind of file to its parameter.
var mediaMethods = map[string]string{
	"sendphoto":     "photo",
	"senddocument":  "document",
	"sendaudio":     "audio",
	"sendvideo":     "video",
	"sendvoice":     "voice",
	"sendanimation": "animation",
	"sendvideonote": "video_note",
	"sendsticker":   "sticker",
}

// trueMethods answer true, as in Telegram, once their parameters are there.
var trueMethods = map[string]bool{
	"sendchataction": true, "answercallbackquery": true, "answerinlinequery": true,
	"answershippingquery": true, "answerprecheckoutquery": true,
	"pinchatmessage": true, "unpinchatmessage": true, "unpinallchatmessages": true,
	"banchatmember": true, "kickchatmember": true, "unbanchatmember": true,
	"restrictchatmember": true, "promotechatmember": true, "setchatadministratorcustomtitle": true,
	"banchatsenderchat": true, "unbanchatsenderchat": true, "setchatpermissions": true,
	"setchattitle": true, "setchatdescription": true, "setchatphoto": true, "deletechatphoto": true,
	"setchatstickerset": true, "deletechatstickerset": true, "leavechat": true,
	"approvechatjoinrequest": true, "declinechatjoinrequest": true,
	"logout": true, "close": true,
}

// call answers every method but getUpdates: the result to encode, or an
// error answer. Unknown methods get Telegram's 404.
func (s *Server) call(method string, c *call) (any, *apiError) {
	if param, ok := mediaMethods[method]; ok {
		return s.sendMedia(c, param)
	}
	if trueMethods[method] {
		if strings.Contains(method, "chat") && c.params.Get("chat_id") == "" {
			return nil, badRequest("chat_id is empty")
		}
		return true, nil
	}
	switch method {
	case "getme":
		return s.botUser(), nil
	case "sendmessage":
		return s.sendMessage(c)
	case "sendlocation", "sendvenue", "sendcontact", "senddice", "sendpoll":
		return s.sendOther(c, method)
	case "sendmediagroup":
		return s.sendMediaGroup(c)
	case "forwardmessage", "copymessage":
		return s.forwardOrCopy(c, method)
	case "editmessagetext", "editmessagecaption", "editmessagereplymarkup":
		return s.edit(c, method)
	case "stoppoll":
		return s.stopPoll(c)
	case "deletemessage":
		return s.deleteMessage(c)
	case "getchat":
		id, err := s.chatID(c.params, false)
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.chatLocked(id), nil
	case "getchatmember":
		userID, _ := strconv.ParseInt(c.params.Get("user_id"), 10, 64)
		if _, err := s.chatID(c.params, false); err != nil {
			return nil, err
		}
		if userID == BotID {
			return tgbotapi.ChatMember{User: s.botUser(), Status: "administrator"}, nil
		}
		return tgbotapi.ChatMember{User: &tgbotapi.User{ID: userID, FirstName: "User" + strconv.FormatInt(userID, 10)}, Status: "member"}, nil
	case "getchatadministrators":
		if _, err := s.chatID(c.params, false); err != nil {
			return nil, err
		}
		return []tgbotapi.ChatMember{{User: s.botUser(), Status: "administrator"}}, nil
	case "getchatmembercount", "getchatmemberscount":
		if _, err := s.chatID(c.params, false); err != nil {
			return nil, err
		}
		return 2, nil // the bot and one user
	case "getfile":
		id := c.params.Get("file_id")
		if id == "" {
			return nil, badRequest("file_id is empty")
		}
		return tgbotapi.File{FileID: id, FileUniqueID: "u" + id, FileSize: 1, FilePath: "files/" + id}, nil
	case "getuserprofilephotos":
		return tgbotapi.UserProfilePhotos{Photos: [][]tgbotapi.PhotoSize{}}, nil
	case "setmycommands":
		var cmds []tgbotapi.BotCommand
		if err := json.Unmarshal([]byte(c.params.Get("commands")), &cmds); err != nil {
			return nil, badRequest("can't parse commands JSON object")
		}
		s.mu.Lock()
		s.commands = cmds
		s.mu.Unlock()
		return true, nil
	case "getmycommands":
		s.mu.Lock()
		defer s.mu.Unlock()
		return append([]tgbotapi.BotCommand{}, s.commands...), nil
	case "deletemycommands":
		s.mu.Lock()
		s.commands = nil
		s.mu.Unlock()
		return true, nil
	case "setwebhook":
		return s.setWebhookCall(c) // an empty url removes the webhook, as in Telegram
	case "deletewebhook":
		s.mu.Lock()
		s.hook = webhook{}
		if c.params.Get("drop_pending_updates") == "true" {
			s.pending = nil
		}
		s.notifyLocked()
		s.mu.Unlock()
		return true, nil
	case "getwebhookinfo":
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.webhookInfoLocked(), nil
	}
	return nil, &apiError{code: http.StatusNotFound, description: "Not Found"}
}

// chatID reads chat_id (or fromParam's name): a number, or the @username
// of a chat seen before. Sending to a number the server has not seen is
// allowed, so tests need not script a chat first; asking about one
// (strict) is not.
func (s *Server) chatID(params url.Values, create bool) (int64, *apiError) {
	return s.chatIDFrom(params, "chat_id", create)
}

func (s *Server) chatIDFrom(params url.Values, name string, create bool) (int64, *apiError) {
	v := params.Get(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if strings.HasPrefix(v, "@") {
		for id, c := range s.chats {
			if strings.EqualFold(c.UserName, v[1:]) {
				return id, nil
			}
		}
		return 0, errChatNotFound
	}
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id == 0 {
		return 0, errChatNotFound
	}
	if to, ok := s.migratedTo[id]; ok && name == "chat_id" {
		e := badRequest("group chat was upgraded to a supergroup chat")
		e.params.MigrateToChatID = to
		return 0, e
	}
	if _, ok := s.chats[id]; !ok {
		if !create {
			return 0, errChatNotFound
		}
		s.chats[id] = *s.chatLocked(id)
	}
	return id, nil
}

// textLen counts like Telegram: UTF-16 code units.
func textLen(s string) int { return len(utf16.Encode([]rune(s))) }

// inlineKeyboard decodes the inline keyboard of a reply_markup parameter.
func inlineKeyboard(markup string) ([][]tgbotapi.InlineKeyboardButton, *apiError) {
	if markup == "" {
		return nil, nil
	}
	var m struct {
		InlineKeyboard [][]tgbotapi.InlineKeyboardButton `json:"inline_keyboard"`
	}
	if err := json.Unmarshal([]byte(markup), &m); err != nil {
		return nil, badRequest("can't parse reply keyboard markup JSON object")
	}
	return m.InlineKeyboard, nil
}

// newMessage builds, stores and records a message of the bot in chat, and
// returns a copy to answer with. fill sets the method-specific fields.
func (s *Server) newMessage(c *call, chat int64, rec Message, fill func(*tgbotapi.Message)) (*tgbotapi.Message, *apiError) {
	kb, apiErr := inlineKeyboard(c.params.Get("reply_markup"))
	if apiErr != nil {
		return nil, apiErr
	}
	replyTo, _ := strconv.Atoi(c.params.Get("reply_to_message_id"))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastMsgID++
	m := &tgbotapi.Message{
		MessageID: s.lastMsgID,
		From:      s.botUser(),
		Date:      int(time.Now().Unix()),
		Chat:      s.chatLocked(chat),
	}
	if replyTo != 0 {
		if orig, ok := s.messages[msgKey{chat, replyTo}]; ok {
			cp := *orig
			cp.ReplyToMessage = nil // Telegram does not nest replies
			m.ReplyToMessage = &cp
		}
	}
	if len(kb) > 0 {
		m.ReplyMarkup = &tgbotapi.InlineKeyboardMarkup{InlineKeyboard: kb}
	}
	if fill != nil {
		fill(m)
	}
	s.messages[msgKey{chat, m.MessageID}] = m

	rec.Method = c.method
	rec.MessageID = m.MessageID
	rec.ChatID = chat
	rec.ParseMode = c.params.Get("parse_mode")
	rec.ReplyTo = replyTo
	rec.ReplyMarkup = c.params.Get("reply_markup")
	rec.InlineKeyboard = kb
	rec.ThreadID, _ = strconv.Atoi(c.params.Get("message_thread_id"))
	rec.BusinessConnectionID = c.params.Get("business_connection_id")
	s.sent = append(s.sent, rec)
	s.notifyLocked()
	cp := *m
	return &cp, nil
}

func (s *Server) sendMessage(c *call) (any, *apiError) {
	chat, apiErr := s.chatID(c.params, true)
	if apiErr != nil {
		return nil, apiErr
	}
	text := c.params.Get("text")
	switch n := textLen(strings.TrimSpace(text)); {
	case n == 0:
		return nil, errTextEmpty
	case textLen(text) > maxTextLen:
		return nil, errTextTooLong
	}
	return s.newMessage(c, chat, Message{Text: text}, func(m *tgbotapi.Message) { m.Text = text })
}

// file reads the file of a media call: a file_id or URL parameter, or an
// uploaded part of a multipart request. It returns "" when there is none.
func file(c *call, param string) string {
	if v := c.params.Get(param); v != "" && !strings.HasPrefix(v, "attach://") {
		return v
	}
	name := param
	if v := c.params.Get(param); strings.HasPrefix(v, "attach://") {
		name = strings.TrimPrefix(v, "attach://")
	}
	if mf := c.r.MultipartForm; mf != nil {
		if fhs := mf.File[name]; len(fhs) > 0 {
			return fhs[0].Filename
		}
	}
	return ""
}

// fileID makes a file_id for a file the bot sent, as Telegram does.
func (s *Server) fileID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastFileID++
	return "file-" + strconv.Itoa(s.lastFileID)
}

// fillMedia sets the field of the media kind on m.
func fillMedia(m *tgbotapi.Message, kind, id, name string) {
	uid := "u" + id
	switch kind {
	case "photo":
		m.Photo = []tgbotapi.PhotoSize{
			{FileID: id + "-s", FileUniqueID: uid + "-s", Width: 90, Height: 90},
			{FileID: id, FileUniqueID: uid, Width: 800, Height: 800},
		}
	case "document":
		m.Document = &tgbotapi.Document{FileID: id, FileUniqueID: uid, FileName: name}
	case "audio":
		m.Audio = &tgbotapi.Audio{FileID: id, FileUniqueID: uid, Duration: 1, FileName: name}
	case "video":
		m.Video = &tgbotapi.Video{FileID: id, FileUniqueID: uid, Width: 640, Height: 360, Duration: 1, FileName: name}
	case "voice":
		m.Voice = &tgbotapi.Voice{FileID: id, FileUniqueID: uid, Duration: 1}
	case "animation":
		m.Animation = &tgbotapi.Animation{FileID: id, FileUniqueID: uid, Width: 320, Height: 240, Duration: 1, FileName: name}
		// Telegram also sends animations as a document, for old clients.
		m.Document = &tgbotapi.Document{FileID: id, FileUniqueID: uid, FileName: name}
	case "video_note":
		m.VideoNote = &tgbotapi.VideoNote{FileID: id, FileUniqueID: uid, Length: 240, Duration: 1}
	case "sticker":
		m.Sticker = &tgbotapi.Sticker{FileID: id, FileUniqueID: uid, Width: 512, Height: 512}
	}
}

func (s *Server) sendMedia(c *call, param string) (any, *apiError) {
	chat, apiErr := s.chatID(c.params, true)
	if apiErr != nil {
		return nil, apiErr
	}
	f := file(c, param)
	if f == "" {
		return nil, badRequest("there is no " + strings.ReplaceAll(param, "_", " ") + " in the request")
	}
	caption := c.params.Get("caption")
	if textLen(caption) > maxCaptionLen {
		return nil, errCaptionTooLong
	}
	id := s.fileID()
	name := ""
	if c.params.Get(param) == "" {
		name = f // uploaded: Telegram keeps the file name
	}
	return s.newMessage(c, chat, Message{Caption: caption, File: f}, func(m *tgbotapi.Message) {
		m.Caption = caption
		fillMedia(m, param, id, name)
	})
}

func (s *Server) sendOther(c *call, method string) (any, *apiError) {
	chat, apiErr := s.chatID(c.params, true)
	if apiErr != nil {
		return nil, apiErr
	}
	p := c.params
	lat, errLat := strconv.ParseFloat(p.Get("latitude"), 64)
	lon, errLon := strconv.ParseFloat(p.Get("longitude"), 64)
	var fill func(*tgbotapi.Message)
	rec := Message{}
	switch method {
	case "sendlocation", "sendvenue":
		if errLat != nil || errLon != nil {
			return nil, badRequest("wrong latitude or longitude")
		}
		loc := tgbotapi.Location{Latitude: lat, Longitude: lon}
		if method == "sendlocation" {
			fill = func(m *tgbotapi.Message) { m.Location = &loc }
			break
		}
		title, address := p.Get("title"), p.Get("address")
		if title == "" || address == "" {
			return nil, badRequest("venue title and address must not be empty")
		}
		rec.Text = title
		fill = func(m *tgbotapi.Message) {
			m.Venue = &tgbotapi.Venue{Location: loc, Title: title, Address: address}
			m.Location = &loc
		}
	case "sendcontact":
		phone, first := p.Get("phone_number"), p.Get("first_name")
		if phone == "" || first == "" {
			return nil, badRequest("phone number and first name must not be empty")
		}
		rec.Text = phone
		fill = func(m *tgbotapi.Message) {
			m.Contact = &tgbotapi.Contact{PhoneNumber: phone, FirstName: first, LastName: p.Get("last_name")}
		}
	case "senddice":
		emoji := p.Get("emoji")
		if emoji == "" {
			emoji = "🎲"
		}
		rec.Text = emoji
		fill = func(m *tgbotapi.Message) {
			// Deterministic, so tests can rely on it: 1 to 5 fits every emoji.
			m.Dice = &tgbotapi.Dice{Emoji: emoji, Value: m.MessageID%5 + 1}
		}
	case "sendpoll":
		question := p.Get("question")
		var options []string
		if err := json.Unmarshal([]byte(p.Get("options")), &options); err != nil || len(options) < 2 {
			return nil, badRequest("poll must have at least 2 option")
		}
		if question == "" {
			return nil, badRequest("poll question must be non-empty")
		}
		rec.Text = question
		poll := tgbotapi.Poll{Question: question, Type: "regular", IsAnonymous: p.Get("is_anonymous") != "false"}
		if t := p.Get("type"); t != "" {
			poll.Type = t
		}
		for _, o := range options {
			poll.Options = append(poll.Options, tgbotapi.PollOption{Text: o})
		}
		fill = func(m *tgbotapi.Message) {
			poll.ID = "poll-" + strconv.Itoa(m.MessageID)
			m.Poll = &poll
		}
	}
	return s.newMessage(c, chat, rec, fill)
}

// inputMedia is one item of sendMediaGroup's media parameter.
type inputMedia struct {
	Type      string `json:"type"`
	Media     string `json:"media"`
	Caption   string `json:"caption"`
	ParseMode string `json:"parse_mode"`
}

func (s *Server) sendMediaGroup(c *call) (any, *apiError) {
	chat, apiErr := s.chatID(c.params, true)
	if apiErr != nil {
		return nil, apiErr
	}
	var media []inputMedia
	if err := json.Unmarshal([]byte(c.params.Get("media")), &media); err != nil {
		return nil, badRequest("can't parse media JSON object")
	}
	if len(media) < 2 || len(media) > 10 {
		return nil, badRequest("wrong number of media specified: must be 2-10")
	}
	s.mu.Lock()
	s.lastFileID++
	group := "group-" + strconv.Itoa(s.lastFileID)
	s.mu.Unlock()
	out := make([]tgbotapi.Message, 0, len(media))
	for _, im := range media {
		f := im.Media
		if name, ok := strings.CutPrefix(f, "attach://"); ok {
			f = file(&call{method: c.method, params: url.Values{}, r: c.r}, name)
		}
		if f == "" {
			return nil, badRequest("wrong file identifier/HTTP URL specified")
		}
		id := s.fileID()
		m, apiErr := s.newMessage(c, chat, Message{Caption: im.Caption, File: f}, func(m *tgbotapi.Message) {
			m.MediaGroupID = group
			m.Caption = im.Caption
			fillMedia(m, im.Type, id, "")
		})
		if apiErr != nil {
			return nil, apiErr
		}
		out = append(out, *m)
	}
	return out, nil
}

// forwardOrCopy forwards or copies a message the server knows (sent by
// the bot, or scripted with AddUpdate or SendMessage).
func (s *Server) forwardOrCopy(c *call, method string) (any, *apiError) {
	chat, apiErr := s.chatID(c.params, true)
	if apiErr != nil {
		return nil, apiErr
	}
	from, apiErr := s.chatIDFrom(c.params, "from_chat_id", false)
	if apiErr != nil {
		return nil, apiErr
	}
	msgID, _ := strconv.Atoi(c.params.Get("message_id"))
	s.mu.Lock()
	orig, ok := s.messages[msgKey{from, msgID}]
	var cp tgbotapi.Message
	if ok {
		cp = *orig
	}
	s.mu.Unlock()
	if method == "forwardmessage" {
		if !ok {
			return nil, badRequest("message to forward not found")
		}
		return s.newMessage(c, chat, Message{Text: cp.Text, Caption: cp.Caption}, func(m *tgbotapi.Message) {
			m.Text, m.Caption, m.Entities = cp.Text, cp.Caption, cp.Entities
			m.ForwardFrom = cp.From
			m.ForwardDate = cp.Date
			m.ReplyMarkup = nil
		})
	}
	if !ok {
		return nil, badRequest("message to copy not found")
	}
	caption := cp.Caption
	if c.params.Has("caption") {
		caption = c.params.Get("caption")
	}
	m, apiErr := s.newMessage(c, chat, Message{Text: cp.Text, Caption: caption}, func(m *tgbotapi.Message) {
		m.Text, m.Caption, m.Entities = cp.Text, caption, cp.Entities
		m.Photo, m.Document, m.Audio, m.Video, m.Voice, m.Sticker, m.Animation = cp.Photo, cp.Document, cp.Audio, cp.Video, cp.Voice, cp.Sticker, cp.Animation
	})
	if apiErr != nil {
		return nil, apiErr
	}
	return tgbotapi.MessageID{MessageID: m.MessageID}, nil
}

// message finds the bot's message named by chat_id and message_id, or
// reports that the call is about an inline message.
func (s *Server) message(c *call) (key msgKey, inline bool, apiErr *apiError) {
	if c.params.Get("inline_message_id") != "" {
		return msgKey{}, true, nil
	}
	chat, apiErr := s.chatID(c.params, false)
	if apiErr != nil {
		return msgKey{}, false, apiErr
	}
	id, err := strconv.Atoi(c.params.Get("message_id"))
	if err != nil {
		return msgKey{}, false, badRequest("message identifier is not specified")
	}
	return msgKey{chat, id}, false, nil
}

// edit answers like Telegram: the edited Message for chat messages (so
// bot.Send works), true for inline messages. Only the bot's own messages
// can be edited, and an edit must change something.
func (s *Server) edit(c *call, method string) (any, *apiError) {
	key, inline, apiErr := s.message(c)
	if apiErr != nil {
		return nil, apiErr
	}
	text, caption := c.params.Get("text"), c.params.Get("caption")
	if method == "editmessagetext" {
		if textLen(strings.TrimSpace(text)) == 0 {
			return nil, errTextEmpty
		}
		if textLen(text) > maxTextLen {
			return nil, errTextTooLong
		}
	}
	if textLen(caption) > maxCaptionLen {
		return nil, errCaptionTooLong
	}
	markup := c.params.Get("reply_markup")
	kb, apiErr := inlineKeyboard(markup)
	if apiErr != nil {
		return nil, apiErr
	}
	if inline {
		return true, nil
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.messages[key]
	if !ok || m.From == nil || m.From.ID != BotID {
		return nil, errEditNotFound
	}
	var oldKB [][]tgbotapi.InlineKeyboardButton
	if m.ReplyMarkup != nil {
		oldKB = m.ReplyMarkup.InlineKeyboard
	}
	sameKB := keyboardsEqual(oldKB, kb)
	switch method {
	case "editmessagetext":
		if m.Text == "" {
			return nil, badRequest("there is no text in the message to edit")
		}
		if m.Text == text && sameKB {
			return nil, errNotModified
		}
		m.Text = text
	case "editmessagecaption":
		if m.Text != "" {
			return nil, badRequest("there is no caption in the message to edit")
		}
		if m.Caption == caption && sameKB {
			return nil, errNotModified
		}
		m.Caption = caption
	case "editmessagereplymarkup":
		if sameKB {
			return nil, errNotModified
		}
	}
	m.ReplyMarkup = nil
	if len(kb) > 0 {
		m.ReplyMarkup = &tgbotapi.InlineKeyboardMarkup{InlineKeyboard: kb}
	}
	m.EditDate = int(time.Now().Unix())
	s.edits = append(s.edits, Message{
		Method: c.method, MessageID: m.MessageID, ChatID: key.chat, Text: m.Text, Caption: m.Caption,
		ParseMode: c.params.Get("parse_mode"), ReplyMarkup: markup, InlineKeyboard: kb,
	})
	s.notifyLocked()
	return *m, nil
}

func keyboardsEqual(a, b [][]tgbotapi.InlineKeyboardButton) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return string(ja) == string(jb)
}

func (s *Server) stopPoll(c *call) (any, *apiError) {
	key, _, apiErr := s.message(c)
	if apiErr != nil {
		return nil, apiErr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.messages[key]
	if !ok || m.Poll == nil {
		return nil, badRequest("message with poll to stop not found")
	}
	if m.Poll.IsClosed {
		return nil, badRequest("poll has already been closed")
	}
	m.Poll.IsClosed = true
	return *m.Poll, nil
}

func (s *Server) deleteMessage(c *call) (any, *apiError) {
	key, _, apiErr := s.message(c)
	if apiErr != nil {
		return nil, apiErr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.messages[key]; !ok {
		return nil, badRequest("message to delete not found")
	}
	delete(s.messages, key)
	s.notifyLocked()
	return true, nil
}

// ErrNoButton is returned by PressButton when the message has no inline
// button with the given callback data.
var ErrNoButton = errors.New("telegramtest: no such inline button")

// PressButton queues the update Telegram sends when user userID presses
// the inline button with callback data data under the bot's message
// messageID in chat chatID: a callback_query carrying that message as it
// is now. It returns the update_id, or an error wrapping ErrNoButton if
// the bot never sent such a message or it has no such button.
func (s *Server) PressButton(chatID, userID int64, messageID int, data string) (int, error) {
	s.mu.Lock()
	m, ok := s.messages[msgKey{chatID, messageID}]
	found := false
	var cp tgbotapi.Message
	if ok {
		cp = *m
		if m.ReplyMarkup != nil {
			for _, row := range m.ReplyMarkup.InlineKeyboard {
				for _, b := range row {
					found = found || b.CallbackData != nil && *b.CallbackData == data
				}
			}
		}
	}
	s.lastFileID++
	qid := "cbq-" + strconv.Itoa(s.lastFileID)
	s.mu.Unlock()
	if !found {
		return 0, fmt.Errorf("message %d in chat %d, data %q: %w", messageID, chatID, data, ErrNoButton)
	}
	return s.AddUpdate(tgbotapi.Update{CallbackQuery: &tgbotapi.CallbackQuery{
		ID:           qid,
		From:         &tgbotapi.User{ID: userID, FirstName: "User" + strconv.FormatInt(userID, 10), UserName: "user" + strconv.FormatInt(userID, 10)},
		Message:      &cp,
		ChatInstance: "ci-" + strconv.FormatInt(chatID, 10),
		Data:         data,
	}}), nil
}
