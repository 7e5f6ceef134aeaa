package gen

import (
	"slices"

	"github.com/shopspring/decimal"
)

// Static reference tables. They are read-only after package init and never
// modified, which is why they may be package-level.

// country is one shipping/customer country.
type country struct {
	code     string // ISO 3166 alpha-2
	currency string // local currency, ISO 4217
	weight   int    // relative share of customers
	carriers []string
}

var countries = []country{
	{"US", "USD", 26, []string{"UPS", "FedEx", "USPS"}},
	{"GB", "GBP", 9, []string{"Royal Mail", "DPD", "DHL"}},
	{"DE", "EUR", 9, []string{"DHL", "DPD", "Hermes"}},
	{"FR", "EUR", 7, []string{"La Poste", "Chronopost", "DPD"}},
	{"CA", "CAD", 5, []string{"Canada Post", "Purolator", "UPS"}},
	{"JP", "JPY", 5, []string{"Japan Post", "Yamato", "Sagawa"}},
	{"NL", "EUR", 4, []string{"PostNL", "DHL", "DPD"}},
	{"ES", "EUR", 4, []string{"Correos", "SEUR", "DHL"}},
	{"IT", "EUR", 4, []string{"Poste Italiane", "BRT", "DHL"}},
	{"AU", "AUD", 4, []string{"Australia Post", "StarTrack", "DHL"}},
	{"CH", "CHF", 3, []string{"Swiss Post", "DHL", "DPD"}},
	{"SE", "SEK", 3, []string{"PostNord", "DHL", "Bring"}},
	{"PL", "PLN", 3, []string{"InPost", "Poczta Polska", "DPD"}},
	{"BE", "EUR", 2, []string{"bpost", "DPD", "DHL"}},
	{"AT", "EUR", 2, []string{"Austrian Post", "DPD", "DHL"}},
	{"IE", "EUR", 2, []string{"An Post", "DPD", "DHL"}},
	{"BR", "BRL", 3, []string{"Correios", "Jadlog", "DHL"}},
	{"MX", "MXN", 2, []string{"Estafeta", "DHL", "FedEx"}},
	{"IN", "INR", 2, []string{"India Post", "Blue Dart", "Delhivery"}},
	{"SG", "SGD", 1, []string{"SingPost", "Ninja Van", "DHL"}},
}

// currency holds an approximate 2025 value in US dollars and how many minor
// digits prices in it use (0 for yen: a JPY price is a whole number, still
// carried with scale 2 as the schema demands).
type currency struct {
	usd    string
	digits int32
}

var currencies = map[string]currency{
	"USD": {"1", 2},
	"EUR": {"1.08", 2},
	"GBP": {"1.27", 2},
	"JPY": {"0.0067", 0},
	"CHF": {"1.12", 2},
	"CAD": {"0.74", 2},
	"AUD": {"0.66", 2},
	"NZD": {"0.61", 2},
	"SEK": {"0.095", 2},
	"NOK": {"0.094", 2},
	"DKK": {"0.145", 2},
	"PLN": {"0.25", 2},
	"CZK": {"0.043", 2},
	"BRL": {"0.20", 2},
	"MXN": {"0.058", 2},
	"INR": {"0.012", 2},
	"SGD": {"0.74", 2},
	"HKD": {"0.128", 2},
	"CNY": {"0.138", 2},
	"KRW": {"0.00075", 0},
	"ZAR": {"0.054", 2},
}

func currencyInfo(code string) (currency, bool) {
	c, ok := currencies[code]
	return c, ok
}

// usdValue is the reference value of one unit of code in US dollars.
func usdValue(code string) decimal.Decimal {
	return decimal.RequireFromString(currencies[code].usd)
}

// KnownCurrencies lists, sorted, the ISO 4217 codes Options.Currencies and
// Options.BaseCurrency may use.
func KnownCurrencies() []string {
	out := make([]string, 0, len(currencies))
	for c := range currencies {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// name is a name part with its ASCII folding, used in e-mail addresses.
type name struct{ display, ascii string }

var firstNames = []name{
	{"Emma", "emma"}, {"Liam", "liam"}, {"Olivia", "olivia"}, {"Noah", "noah"},
	{"Sophia", "sophia"}, {"Lucas", "lucas"}, {"Mia", "mia"}, {"Mateo", "mateo"},
	{"Zoë", "zoe"}, {"José", "jose"}, {"Søren", "soren"}, {"François", "francois"},
	{"Łukasz", "lukasz"}, {"Yūki", "yuki"}, {"Aarav", "aarav"}, {"Priya", "priya"},
	{"Hannah", "hannah"}, {"Jonas", "jonas"}, {"Chloé", "chloe"}, {"Giulia", "giulia"},
	{"Lars", "lars"}, {"Ingrid", "ingrid"}, {"Wei", "wei"}, {"Mei", "mei"},
	{"Oliver", "oliver"}, {"Amelia", "amelia"}, {"Diego", "diego"}, {"Lucía", "lucia"},
	{"Finn", "finn"}, {"Aoife", "aoife"}, {"Sakura", "sakura"}, {"Ethan", "ethan"},
}

var lastNames = []name{
	{"Smith", "smith"}, {"Johnson", "johnson"}, {"Müller", "mueller"}, {"Schmidt", "schmidt"},
	{"Martin", "martin"}, {"Bernard", "bernard"}, {"García", "garcia"}, {"Rossi", "rossi"},
	{"de Vries", "devries"}, {"Jansen", "jansen"}, {"Nowak", "nowak"}, {"Kowalski", "kowalski"},
	{"Andersson", "andersson"}, {"Nielsen", "nielsen"}, {"Sato", "sato"}, {"Suzuki", "suzuki"},
	{"Tanaka", "tanaka"}, {"Patel", "patel"}, {"Sharma", "sharma"}, {"Silva", "silva"},
	{"Santos", "santos"}, {"Hernández", "hernandez"}, {"O'Brien", "obrien"}, {"Murphy", "murphy"},
	{"Brown", "brown"}, {"Wilson", "wilson"}, {"Tremblay", "tremblay"}, {"Roy", "roy"},
	{"Lee", "lee"}, {"Chen", "chen"}, {"Wong", "wong"}, {"Fischer", "fischer"},
}

var companySuffixes = []string{"Ltd", "GmbH", "Inc.", "LLC", "S.A.", "B.V.", "AB", "K.K."}

// E-mail domains are the ones RFC 2606 reserves, so generated addresses
// can never reach anyone.
var emailDomains = []string{"example.com", "example.org", "example.net"}

var coupons = []string{"WELCOME10", "SPRING25", "FREESHIP", "LOYALTY15", "BLACKFRIDAY30", "APP5"}

var failureReasons = []string{
	"INSUFFICIENT_FUNDS", "CARD_DECLINED", "EXPIRED_CARD", "INCORRECT_CVC",
	"SUSPECTED_FRAUD", "PROCESSOR_TIMEOUT", "3DS_AUTHENTICATION_FAILED",
}

// category is a product family with a list-price band in US dollars.
type category struct {
	code     string
	min, max int64 // cents
	weight   int
}

var categories = []category{
	{"BOOK", 599, 4999, 18},
	{"TOY", 799, 9999, 12},
	{"HOME", 999, 29999, 16},
	{"APPAREL", 1499, 19999, 20},
	{"BEAUTY", 499, 8999, 12},
	{"SPORT", 1999, 49999, 10},
	{"ELEC", 2999, 149999, 9},
	{"LUX", 49999, 649999, 3},
}

// Weighted choice tables: value and relative weight.
type weighted[T any] struct {
	v T
	w int
}

var (
	segmentWeights = []weighted[Segment]{{SegmentConsumer, 80}, {SegmentBusiness, 15}, {SegmentVIP, 5}}
	statusWeights  = []weighted[OrderStatus]{{OrderConfirmed, 78}, {OrderCreated, 16}, {OrderCancelled, 6}}
	channelWeights = []weighted[Channel]{{ChannelWeb, 55}, {ChannelMobile, 35}, {ChannelStore, 10}}
	methodWeights  = []weighted[PaymentMethod]{{MethodCard, 60}, {MethodPayPal, 20}, {MethodWallet, 15}, {MethodBankTransfer, 5}}
	itemsWeights   = []weighted[int]{{1, 35}, {2, 30}, {3, 18}, {4, 10}, {5, 7}}
	// stepsWeights: how far a delivery has got when the data set ends;
	// most are complete.
	stepsWeights = []weighted[int]{{5, 62}, {4, 10}, {3, 12}, {2, 9}, {1, 7}}
)
