package wizard

import (
	"fmt"
	"reflect"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
)

// maxCallbackData is Telegram's limit on a button's callback data.
const maxCallbackData = 64

// tagButtons returns m with tag put before the callback data of each of
// its inline buttons, and whether it had any. m itself, and the keyboard
// it refers to, are not changed: the caller may send them again.
//
// Every tgbotapi config that can carry an inline keyboard has a
// ReplyMarkup field (BaseChat's, an any; BaseEdit's, a pointer), so one
// reflective look covers sends, copies and edits alike.
func tagButtons(m tgbotapi.Chattable, tag string) (tgbotapi.Chattable, bool, error) {
	v := reflect.ValueOf(m)
	isPtr := v.Kind() == reflect.Pointer
	if isPtr {
		if v.IsNil() {
			return m, false, nil
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return m, false, nil
	}
	cp := reflect.New(v.Type()).Elem()
	cp.Set(v)
	field := cp.FieldByName("ReplyMarkup")
	if !field.IsValid() || !field.CanSet() {
		return m, false, nil
	}
	var kb *tgbotapi.InlineKeyboardMarkup
	byValue := false
	switch x := field.Interface().(type) {
	case tgbotapi.InlineKeyboardMarkup:
		kb, byValue = &x, true
	case *tgbotapi.InlineKeyboardMarkup:
		kb = x
	}
	if kb == nil {
		return m, false, nil
	}
	tagged, n, err := tagKeyboard(*kb, tag)
	if err != nil || n == 0 {
		return m, false, err
	}
	if byValue {
		field.Set(reflect.ValueOf(tagged))
	} else {
		field.Set(reflect.ValueOf(&tagged))
	}
	out := cp
	if isPtr {
		out = cp.Addr()
	}
	return out.Interface().(tgbotapi.Chattable), true, nil
}

// tagKeyboard returns a copy of kb whose callback buttons carry tag, and
// how many there are.
func tagKeyboard(kb tgbotapi.InlineKeyboardMarkup, tag string) (tgbotapi.InlineKeyboardMarkup, int, error) {
	n := 0
	rows := make([][]tgbotapi.InlineKeyboardButton, len(kb.InlineKeyboard))
	for i, row := range kb.InlineKeyboard {
		rows[i] = make([]tgbotapi.InlineKeyboardButton, len(row))
		for j, b := range row {
			if b.CallbackData != nil {
				data := tag + *b.CallbackData
				if len(data) > maxCallbackData {
					return kb, 0, fmt.Errorf("button %q: callback data %q is %d bytes with the wizard's tag %q; Telegram takes at most %d",
						b.Text, *b.CallbackData, len(data), tag, maxCallbackData)
				}
				b.CallbackData = &data
				n++
			}
			rows[i][j] = b
		}
	}
	return tgbotapi.InlineKeyboardMarkup{InlineKeyboard: rows}, n, nil
}
