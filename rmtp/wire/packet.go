package wire

// Packet is a decoded packet: the header and the body of its type. Only
// the body named by Header.Type is meaningful. A Packet is meant to be
// reused across Decode calls so the receive path does not allocate.
type Packet struct {
	Header
	Tag []byte // the authentication tag when FlagAuth is set; aliases the input

	Announce Announce
	Data     Data
	Tail     Tail
	NAK      NAK
	Advert   Advert
	Status   Status
}

// Decode decodes b into p. Slices in p (payload, masks, tag) alias b. A
// packet with FlagEncrypted must be opened by the caller first; Decode
// rejects it with ReasonEncrypted. On error p's contents are undefined and
// must not be acted on.
func Decode(b []byte, p *Packet) error {
	if len(b) > MaxPacketSize {
		return errf(0, ReasonRange, "%d bytes", len(b))
	}
	h, err := ParseHeader(b)
	if err != nil {
		return err
	}
	p.Header = h
	body := b[HeaderSize:]
	p.Tag = nil
	if h.Flags&FlagAuth != 0 {
		if len(body) < TagSize {
			return errTrunc(h.Type, HeaderSize+TagSize, len(b))
		}
		p.Tag = body[len(body)-TagSize:]
		body = body[:len(body)-TagSize]
	}
	if h.Flags&FlagEncrypted != 0 {
		return errf(h.Type, ReasonEncrypted, "")
	}
	switch h.Type {
	case TypeAnnounce:
		return p.Announce.Parse(body)
	case TypeData:
		return p.Data.Parse(body)
	case TypeTail:
		return p.Tail.Parse(body)
	case TypeNAK:
		return p.NAK.Parse(body)
	case TypeAdvert:
		return p.Advert.Parse(body)
	case TypeStatus:
		return p.Status.Parse(body)
	}
	return errf(h.Type, ReasonType, "") // unreachable: ParseHeader checked
}

// Append appends the header and the body of p's type to b (no tag).
func (p *Packet) Append(b []byte) []byte {
	b = p.Header.Append(b)
	switch p.Type {
	case TypeAnnounce:
		b = p.Announce.Append(b)
	case TypeData:
		b = p.Data.Append(b)
	case TypeTail:
		b = p.Tail.Append(b)
	case TypeNAK:
		b = p.NAK.Append(b)
	case TypeAdvert:
		b = p.Advert.Append(b)
	case TypeStatus:
		b = p.Status.Append(b)
	}
	return b
}
